-- Nexmark q7, highest bid: per 10 s tumbling window, the bids at the window's largest
-- price (the bids of the window itself; Flink's SQL BETWEEN reaches 1 ms into the
-- previous window, which the query does not mean).
WITH bids AS (
  SELECT bid_auction AS auction, bid_price AS price, bid_bidder AS bidder, date_time,
         coalesce(bid_extra, '') AS extra, date_time // 10000 AS w
  FROM events WHERE event_type = 2
),
most AS (SELECT w, max(price) AS maxprice FROM bids GROUP BY w)
SELECT b.auction, b.price, b.bidder, b.date_time, b.extra
FROM bids b JOIN most m ON b.w = m.w AND b.price = m.maxprice
