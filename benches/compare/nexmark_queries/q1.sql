-- Nexmark q1, currency conversion: every bid's price in euros (an exact decimal).
SELECT bid_auction AS auction, bid_bidder AS bidder, 0.908 * bid_price AS price, date_time,
       bid_extra AS extra
FROM events WHERE event_type = 2
