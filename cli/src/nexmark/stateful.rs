//! The Nexmark queries on keyed state and timers: q3 (local item suggestion, a stream
//! join without windows) and q4 (average closing price per category), and the plain
//! loops their rows are checked against.
//!
//! ```text
//!   q3: persons in or, id or ca ∪ auctions of category 10 ─key_by(person / seller)─▶
//!       keyed process: a person's (name, city, state) kept; auctions that came before
//!       their seller wait in the state; each match out as (name, city, state, auction)
//!
//!   q4: auctions ∪ bids ─key_by(auction)─▶ keyed process: the auction, the highest bid
//!       in [date_time, expires], bids that came before their auction; a timer at
//!       expires closes it: (category, price) out, the state freed
//!       ─key_by(category)─▶ keyed process: (auctions, total) per category; a timer at
//!       the next watermark sends the changed categories' (category, auctions, total)
//! ```
//!
//! Definitions follow Flink's Nexmark SQL, with these choices where it is loose:
//! - q3 keeps, like the SQL's regular join, every category-10 auction whose seller has not
//!   come (the generator's sellers are earlier persons, so few wait long); persons of other
//!   states are dropped before the exchange (the filter pushed down).
//! - q4's SQL (`MAX(price)` of the bids `BETWEEN` an auction's `date_time` and `expires`,
//!   then `AVG` per category) is an update stream in Flink. Here an auction closes when
//!   the watermark passes its `expires` (no bid of it can come later), and q4 writes a
//!   category's new `(auctions, total)` at the next watermark after it changes: a
//!   changelog whose last row per category is the SQL's answer (`avg_price` = total /
//!   auctions). An auction with no bid in its interval is not counted, as in the inner
//!   join of the SQL. The check reduces the changelog to its last rows.
//! - A bid that comes before its auction waits until the watermark passes the bid's own
//!   time: an auction that comes later than that is later than the bid (or late), so the
//!   bid cannot be in its interval.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use weir::dataflow::{Keyed, ProcessError, Stream};

use super::windowed::in_event_time;
use super::{Event, Row};

/// The states q3 keeps persons of (the generator writes them in lower case).
const Q3_STATES: [&str; 3] = ["or", "id", "ca"];
/// The category q3 keeps auctions of.
const Q3_CATEGORY: u64 = 10;

/// A row of q3: `(name, city, state, auction id)`.
pub type LocalItem = (String, String, String, u64);

/// A row of q4: `(category, auctions closed with a bid, total of their winning prices)`.
pub type CategoryPrice = (u64, u64, u64);

/// What q3 keys: a person (name, city, state) or an auction's id, by person / seller.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Party {
    Person(u64, String, String, String),
    Auction(u64, u64),
}

/// q3's state of one person: who they are, once they came, and the auctions of theirs
/// that came before them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Seller {
    person: Option<(String, String, String)>,
    waiting: Vec<u64>,
}

fn q3_party(event: Event) -> Option<Party> {
    match event {
        Event::Person(p) if Q3_STATES.contains(&p.state.as_str()) => {
            Some(Party::Person(p.id as u64, p.name, p.city, p.state))
        }
        Event::Auction(a) if a.category as u64 == Q3_CATEGORY => {
            Some(Party::Auction(a.seller as u64, a.id as u64))
        }
        _ => None,
    }
}

/// q3, local item suggestion: the category-10 auctions of sellers in Oregon, Idaho or
/// California, with the seller's name, city and state.
pub(super) fn q3(events: Stream<Event>) -> Stream<Row> {
    events
        .flat_map(q3_party)
        .key_by(|party| match party {
            Party::Person(id, ..) | Party::Auction(id, _) => *id,
        })
        .process(
            |ctx: &mut Keyed<'_, u64, Seller, Row>, party: Party| {
                let seller = ctx.state().get_or_insert_default();
                let mut matched = Vec::new();
                match party {
                    Party::Person(_, name, city, state) => {
                        for auction in seller.waiting.drain(..) {
                            matched.push((name.clone(), city.clone(), state.clone(), auction));
                        }
                        seller.person = Some((name, city, state));
                    }
                    Party::Auction(_, auction) => match &seller.person {
                        Some((name, city, state)) => {
                            matched.push((name.clone(), city.clone(), state.clone(), auction));
                        }
                        None => seller.waiting.push(auction),
                    },
                }
                for row in matched {
                    ctx.emit(Row::LocalItem(row));
                }
                Ok(())
            },
            |_, _| Ok(()),
        )
}

/// What q4 keys by auction: an auction's (category, date_time, expires), or a bid's
/// (price, date_time).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Sale {
    Auction(u64, u64, i64, i64),
    Bid(u64, u64, i64),
}

/// q4's state of one auction.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Open {
    /// (category, date_time, expires), once the auction came.
    auction: Option<(u64, i64, i64)>,
    /// The highest price bid in the auction's interval so far.
    highest: Option<u64>,
    /// Bids that came before the auction: (price, date_time).
    early: Vec<(u64, i64)>,
}

impl Open {
    fn bid(&mut self, price: u64, time: i64) {
        if let Some((_, from, to)) = self.auction
            && (from..=to).contains(&time)
        {
            self.highest = Some(self.highest.map_or(price, |h| h.max(price)));
        }
    }
}

fn q4_sale(event: Event) -> Option<Sale> {
    match event {
        Event::Auction(a) => Some(Sale::Auction(
            a.id as u64,
            a.category as u64,
            a.date_time as i64,
            a.expires as i64,
        )),
        Event::Bid(b) => Some(Sale::Bid(
            b.auction as u64,
            b.price as u64,
            b.date_time as i64,
        )),
        Event::Person(_) => None,
    }
}

/// q4's first step for one auction's record.
fn q4_sale_record(
    ctx: &mut Keyed<'_, u64, Open, (u64, u64)>,
    sale: Sale,
) -> Result<(), ProcessError> {
    let open = ctx.state().get_or_insert_default();
    let timer = match sale {
        Sale::Auction(_, category, from, to) => {
            open.auction = Some((category, from, to));
            for (price, time) in std::mem::take(&mut open.early) {
                open.bid(price, time);
            }
            to
        }
        Sale::Bid(_, price, time) => {
            if open.auction.is_some() {
                open.bid(price, time);
                return Ok(());
            }
            open.early.push((price, time));
            time
        }
    };
    ctx.set_timer(timer);
    Ok(())
}

/// q4's first step when the watermark passes an auction's `expires` (it closes) or an
/// early bid's time (the bid goes if its auction has not come).
fn q4_sale_timer(
    ctx: &mut Keyed<'_, u64, Open, (u64, u64)>,
    time: i64,
) -> Result<(), ProcessError> {
    let state = ctx.state();
    let Some(open) = state.as_mut() else {
        return Ok(());
    };
    match open.auction {
        Some((category, _, expires)) if time >= expires => {
            let closed = open.highest.map(|price| (category, price));
            *state = None;
            if let Some(closed) = closed {
                ctx.emit(closed);
            }
        }
        Some(_) => {}
        None => {
            open.early.retain(|(_, bid_time)| *bid_time > time);
            if open.early.is_empty() {
                *state = None;
            }
        }
    }
    Ok(())
}

/// q4, average price per category: the winning bids of closed auctions, their count and
/// total per category, as a changelog (see the module documentation).
pub(super) fn q4(events: Stream<Event>) -> Stream<Row> {
    in_event_time(events)
        .flat_map(q4_sale)
        .key_by(|sale| match sale {
            Sale::Auction(id, ..) | Sale::Bid(id, ..) => *id,
        })
        .process(q4_sale_record, q4_sale_timer)
        .key_by(|(category, _)| *category)
        .process(
            |ctx: &mut Keyed<'_, u64, (u64, u64, bool), Row>, (_, price): (u64, u64)| {
                let watermark = ctx.watermark();
                let (auctions, total, dirty) = ctx.state().get_or_insert_default();
                *auctions += 1;
                *total += price;
                if !*dirty {
                    *dirty = true;
                    ctx.set_timer(watermark.saturating_add(1));
                }
                Ok(())
            },
            |ctx, _| {
                let category = *ctx.key();
                if let Some((auctions, total, dirty)) = ctx.state() {
                    *dirty = false;
                    let row = Row::CategoryPrice((category, *auctions, *total));
                    ctx.emit(row);
                }
                Ok(())
            },
        )
}

/// q4's changelog reduced to its last row per category (the one with the most auctions).
pub(super) fn q4_final(rows: Stream<Row>) -> Stream<Row> {
    rows.key_by(|row| match row {
        Row::CategoryPrice((category, ..)) => *category,
        _ => u64::MAX,
    })
    .aggregate(Row::clone, |a, b| {
        if let (Row::CategoryPrice(x), Row::CategoryPrice(y)) = (&*a, &b)
            && y.1 > x.1
        {
            *a = b;
        }
    })
    .map(|(_, row)| row)
}

/// q3's rows over `events`, by a plain loop.
pub(super) fn q3_model(events: impl Iterator<Item = Event>) -> Vec<Row> {
    let mut people: HashMap<u64, (String, String, String)> = HashMap::new();
    let mut auctions: Vec<(u64, u64)> = Vec::new();
    for event in events {
        match event {
            Event::Person(p) if Q3_STATES.contains(&p.state.as_str()) => {
                people.insert(p.id as u64, (p.name, p.city, p.state));
            }
            Event::Auction(a) if a.category as u64 == Q3_CATEGORY => {
                auctions.push((a.seller as u64, a.id as u64));
            }
            _ => {}
        }
    }
    auctions
        .into_iter()
        .filter_map(|(seller, id)| {
            let (name, city, state) = people.get(&seller)?.clone();
            Some(Row::LocalItem((name, city, state, id)))
        })
        .collect()
}

/// q4's final rows over `events`, by a plain loop.
pub(super) fn q4_model(events: impl Iterator<Item = Event>) -> Vec<Row> {
    let mut auctions: HashMap<u64, (u64, i64, i64)> = HashMap::new();
    let mut bids: Vec<(u64, u64, i64)> = Vec::new();
    for event in events {
        match event {
            Event::Auction(a) => {
                auctions.insert(
                    a.id as u64,
                    (a.category as u64, a.date_time as i64, a.expires as i64),
                );
            }
            Event::Bid(b) => bids.push((b.auction as u64, b.price as u64, b.date_time as i64)),
            Event::Person(_) => {}
        }
    }
    let mut highest: HashMap<u64, u64> = HashMap::new();
    for (auction, price, time) in bids {
        if let Some((_, from, to)) = auctions.get(&auction)
            && (*from..=*to).contains(&time)
        {
            let best = highest.entry(auction).or_insert(price);
            *best = (*best).max(price);
        }
    }
    let mut categories: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (auction, price) in highest {
        let sums = categories.entry(auctions[&auction].0).or_default();
        sums.0 += 1;
        sums.1 += price;
    }
    categories
        .into_iter()
        .map(|(category, (count, total))| Row::CategoryPrice((category, count, total)))
        .collect()
}
