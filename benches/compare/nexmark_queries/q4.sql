-- Nexmark q4, average price per category: the highest bid of each auction among the bids
-- between its date_time and expires, then per category the auctions with such a bid and
-- the total of their highest bids (avg_price = total / auctions). weir writes a changelog;
-- nexmark_check.py keeps its last row per category.
WITH winning AS (
  SELECT a.auction_id AS id, a.auction_category AS category, max(b.bid_price) AS price
  FROM events a JOIN events b ON a.auction_id = b.bid_auction
  WHERE a.event_type = 1 AND b.event_type = 2
    AND b.date_time BETWEEN a.date_time AND a.auction_expires
  GROUP BY a.auction_id, a.auction_category
)
SELECT category, count(*) AS auctions, sum(price) AS total
FROM winning GROUP BY category
