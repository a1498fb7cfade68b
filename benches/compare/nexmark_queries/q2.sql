-- Nexmark q2, selection: the bids of every 123rd auction (as Flink's and RisingWave's
-- Nexmark; the original listed five auction ids).
SELECT bid_auction AS auction, bid_price AS price
FROM events WHERE event_type = 2 AND bid_auction % 123 = 0
