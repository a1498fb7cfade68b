-- Nexmark q8, monitor new users: people who registered and opened an auction in the same
-- 10 s tumbling window, once per window.
WITH p AS (
  SELECT DISTINCT person_id AS id, person_name AS name, date_time // 10000 * 10000 AS start
  FROM events WHERE event_type = 0
),
a AS (
  SELECT DISTINCT auction_seller AS seller, date_time // 10000 * 10000 AS start
  FROM events WHERE event_type = 1
)
SELECT p.id, p.name, p.start AS window_start
FROM p JOIN a ON p.id = a.seller AND p.start = a.start
