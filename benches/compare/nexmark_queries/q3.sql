-- Nexmark q3, local item suggestion: category-10 auctions of sellers in Oregon, Idaho or
-- California (the generator writes states in lower case), with the seller's name, city
-- and state.
SELECT p.person_name AS name, p.person_city AS city, p.person_state AS state,
       a.auction_id AS id
FROM events a JOIN events p ON a.auction_seller = p.person_id
WHERE a.event_type = 1 AND a.auction_category = 10
  AND p.event_type = 0 AND p.person_state IN ('or', 'id', 'ca')
