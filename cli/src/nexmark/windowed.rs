//! The windowed Nexmark queries: q5 (hot items), q7 (highest bid) and q8 (new users), in
//! event time, and the plain loops their rows are checked against.
//!
//! ```text
//!   events ─event_time(date_time, ascending)─┬─ bids ─key_by(auction)─ HOP(10 s, 2 s) count
//!                                            │     ─key_by(window end)─ max with ties ─▶ q5
//!                                            ├─ bids ─key_by(())─ TUMBLE(10 s) max price
//!                                            │     with the bids at it ─▶ q7
//!                                            └─ persons ∪ auctions ─key_by(person / seller)─
//!                                                  TUMBLE(10 s): a person who opened an
//!                                                  auction in the window ─▶ q8
//! ```
//!
//! Definitions follow the Nexmark of Flink and RisingWave, with these choices where they
//! are loose:
//! - q5 writes every auction whose bid count in a window equals the window's largest
//!   (ties all written), with the window's start and end: `(start, end, auction, num)`.
//! - q7 writes the bids whose price is the largest of their own tumbling window (Flink's
//!   SQL joins on `date_time BETWEEN rowtime − 10 s AND rowtime`, whose lower edge reaches
//!   one millisecond into the previous window; the window itself is what the query means).
//! - q8 joins a person and the auctions they opened in the same 10 s tumbling window and
//!   writes the person once per window: `(id, name, window start)`.
//!
//! Each task's events come in time order (the generator's and a record file's), so the
//! watermark is ascending: no event is late, and the model counts every one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use weir::dataflow::{Stream, Watermarks, Window, Windows};

use super::{Bid, Event, Row};

/// q5's windows: 10 s long, one every 2 s.
const HOT_SIZE: Duration = Duration::from_secs(10);
const HOT_SLIDE: Duration = Duration::from_secs(2);
/// q7's and q8's tumbling windows.
const TUMBLE: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).expect("a short window")
}

/// An event's time, in Unix milliseconds.
fn time(event: &Event) -> i64 {
    event.timestamp() as i64
}

/// The events in event time (the generator's order within each task is time order). An
/// event whose time does not fit an `i64` of milliseconds fails the job naming it.
pub(super) fn in_event_time(events: Stream<Event>) -> Stream<Event> {
    events
        .try_map(|event: Event| {
            if i64::try_from(event.timestamp()).is_err() {
                return Err(format!(
                    "an event's date_time {} ms overflows the event time (i64 milliseconds): \
                     {event:?}",
                    event.timestamp()
                ));
            }
            Ok(event)
        })
        .event_time(time, Watermarks::ascending())
}

fn bid(event: Event) -> Option<Bid> {
    match event {
        Event::Bid(bid) => Some(bid),
        _ => None,
    }
}

/// The larger of two `(value, items)`, the items of both on a tie.
fn max_with_ties<V: Ord, I>(a: &mut (V, Vec<I>), b: (V, Vec<I>)) {
    if b.0 > a.0 {
        *a = b;
    } else if b.0 == a.0 {
        a.1.extend(b.1);
    }
}

/// q5, hot items: per 10 s window sliding by 2 s, the auctions with the most bids.
pub(super) fn q5(events: Stream<Event>) -> Stream<Row> {
    let size = ms(HOT_SIZE);
    in_event_time(events)
        .flat_map(bid)
        .map(|bid| (bid.auction as u64, bid.date_time as i64))
        .key_by(|(auction, _)| *auction)
        .window(Windows::sliding(HOT_SIZE, HOT_SLIDE), |(_, time)| *time)
        .aggregate(|_| 1u64, |a, b| *a += b)
        .key_by(|(window, _, _)| window.end)
        .window(Windows::tumbling(HOT_SLIDE), |(window, _, _)| {
            window.max_timestamp()
        })
        .aggregate(
            |(_, auction, count)| (*count, vec![*auction]),
            max_with_ties,
        )
        .flat_map(move |(_, end, (count, auctions))| {
            auctions
                .into_iter()
                .map(move |auction| Row::HotItem((end - size, end, auction, count)))
        })
}

/// q7, highest bid: per 10 s tumbling window, the bids at the window's largest price.
pub(super) fn q7(events: Stream<Event>) -> Stream<Row> {
    in_event_time(events)
        .flat_map(bid)
        .key_by(|_| ())
        .window(Windows::tumbling(TUMBLE), |bid| bid.date_time as i64)
        .aggregate(
            |bid| (bid.price as u64, vec![highest_bid_row(bid)]),
            max_with_ties,
        )
        .flat_map(|(_, (), (_, bids))| bids.into_iter().map(Row::HighestBid))
}

/// q7's row of a bid: `(auction, price, bidder, date_time, extra)`.
fn highest_bid_row(bid: &Bid) -> (u64, u64, u64, u64, String) {
    (
        bid.auction as u64,
        bid.price as u64,
        bid.bidder as u64,
        bid.date_time,
        bid.extra.clone(),
    )
}

/// What q8 keeps of a person or an auction: the person's (or seller's) id, the time, the
/// person's name, and whether it is an auction.
type Party = (u64, i64, Option<String>, bool);

fn party(event: Event) -> Option<Party> {
    match event {
        Event::Person(p) => Some((p.id as u64, p.date_time as i64, Some(p.name), false)),
        Event::Auction(a) => Some((a.seller as u64, a.date_time as i64, None, true)),
        Event::Bid(_) => None,
    }
}

/// q8, monitor new users: the people who registered and opened an auction in the same
/// 10 s tumbling window.
pub(super) fn q8(events: Stream<Event>) -> Stream<Row> {
    in_event_time(events)
        .flat_map(party)
        .key_by(|p| p.0)
        .window(Windows::tumbling(TUMBLE), |p| p.1)
        .aggregate(
            |p| (p.2.clone(), p.3),
            |a, b| {
                // One person per id: the smaller name keeps the merge commutative anyway.
                a.0 = match (a.0.take(), b.0) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
                a.1 |= b.1;
            },
        )
        .flat_map(
            |(window, id, (name, opened)): (Window, u64, (Option<String>, bool))| {
                name.filter(|_| opened)
                    .map(|name| Row::NewUser((id, name, window.start)))
            },
        )
}

/// The tumbling or sliding windows' starts of a time, as plain arithmetic.
fn starts(time: i64, size: i64, slide: i64) -> impl Iterator<Item = i64> {
    let last = time - time.rem_euclid(slide);
    (0..)
        .map(move |k| last - k * slide)
        .take_while(move |start| *start > time - size)
}

/// q5's rows over `events`, by a plain loop.
pub(super) fn q5_model(events: impl Iterator<Item = Event>) -> Vec<Row> {
    let (size, slide) = (ms(HOT_SIZE), ms(HOT_SLIDE));
    let mut counts: HashMap<(i64, u64), u64> = HashMap::new();
    for bid in events.filter_map(bid) {
        for start in starts(bid.date_time as i64, size, slide) {
            *counts.entry((start, bid.auction as u64)).or_default() += 1;
        }
    }
    let mut most: HashMap<i64, u64> = HashMap::new();
    for (&(start, _), &count) in &counts {
        let max = most.entry(start).or_default();
        *max = (*max).max(count);
    }
    counts
        .into_iter()
        .filter(|((start, _), count)| most[start] == *count)
        .map(|((start, auction), count)| Row::HotItem((start, start + size, auction, count)))
        .collect()
}

/// q7's rows over `events`, by a plain loop.
pub(super) fn q7_model(events: impl Iterator<Item = Event>) -> Vec<Row> {
    let size = ms(TUMBLE);
    let bids: Vec<Bid> = events.filter_map(bid).collect();
    let mut most: HashMap<i64, u64> = HashMap::new();
    for bid in &bids {
        let max = most
            .entry((bid.date_time as i64).div_euclid(size))
            .or_default();
        *max = (*max).max(bid.price as u64);
    }
    bids.iter()
        .filter(|bid| most[&(bid.date_time as i64).div_euclid(size)] == bid.price as u64)
        .map(|bid| Row::HighestBid(highest_bid_row(bid)))
        .collect()
}

/// q8's rows over `events`, by a plain loop.
pub(super) fn q8_model(events: impl Iterator<Item = Event>) -> Vec<Row> {
    let size = ms(TUMBLE);
    let mut people: BTreeMap<(i64, u64), String> = BTreeMap::new();
    let mut sellers: HashSet<(i64, u64)> = HashSet::new();
    for event in events {
        match event {
            Event::Person(p) => {
                let start = (p.date_time as i64).div_euclid(size) * size;
                people.insert((start, p.id as u64), p.name);
            }
            Event::Auction(a) => {
                let start = (a.date_time as i64).div_euclid(size) * size;
                sellers.insert((start, a.seller as u64));
            }
            Event::Bid(_) => {}
        }
    }
    people
        .into_iter()
        .filter(|(key, _)| sellers.contains(key))
        .map(|((start, id), name)| Row::NewUser((id, name, start)))
        .collect()
}
