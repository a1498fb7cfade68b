-- Nexmark q0, pass-through: every bid.
SELECT bid_auction AS auction, bid_bidder AS bidder, bid_price AS price, date_time,
       bid_extra AS extra
FROM events WHERE event_type = 2
