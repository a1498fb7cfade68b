-- Nexmark q5, hot items: per 10 s window sliding by 2 s (HOP), the auctions with the
-- most bids, ties all kept. Windows are aligned to time 0 (Unix milliseconds).
WITH bids AS (
  SELECT bid_auction AS auction, date_time FROM events WHERE event_type = 2
),
windows AS (
  SELECT b.auction, s.start
  FROM bids b,
       LATERAL (SELECT (b.date_time - b.date_time % 2000) - k * 2000 AS start
                FROM range(0, 5) t(k)) s
  WHERE s.start > b.date_time - 10000
),
counts AS (
  SELECT start, auction, count(*) AS num FROM windows GROUP BY start, auction
),
most AS (
  SELECT start, max(num) AS maxn FROM counts GROUP BY start
)
SELECT c.start AS window_start, c.start + 10000 AS window_end, c.auction, c.num
FROM counts c JOIN most m ON c.start = m.start AND c.num = m.maxn
