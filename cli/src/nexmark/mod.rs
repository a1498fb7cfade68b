//! Nexmark, the streaming benchmark of an online auction (people register, open
//! auctions, bid), as a dataflow source, its stateless queries q0–q2, its queries on
//! keyed state and timers q3 and q4 (module `stateful`) and its windowed queries q5, q7
//! and q8 (module `windowed`).
//!
//! ```text
//!   events(flow, N, rate) ── task t of P: the generator at offset t, step P ──▶ Stream<Event>
//!     q0  bids, passed through            (auction, bidder, price, date_time, extra)
//!     q1  bids with the price in euros    (auction, bidder, 0.908 × price, date_time, extra)
//!     q2  bids of every 123rd auction     (auction, price)
//! ```
//!
//! The events come from the `nexmark` crate, the Rust port of the standard generator:
//! event `i` depends only on the configuration (with a fixed base time,
//! [`BASE_TIME_MS`]) and `i`, so P tasks that each generate
//! every P-th event produce together exactly the events one task would, each once.
//! Where the queries' definitions vary between suites, this follows the Nexmark
//! benchmark of Flink and RisingWave: q1's rate is the exact decimal `0.908 × price`
//! (written with three decimals), q2 keeps `auction % 123 == 0` (the original Nexmark
//! listed five auction ids instead).

mod stateful;
mod windowed;

use std::time::{Duration, Instant};

use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use serde::{Deserialize, Serialize};
use weir::dataflow::{Dataflow, Push, ReplayableSource, Stream, TaskContext};
use weir::error::{Result, WeirError};

pub use nexmark::event::{Auction, Bid, Event, Person};

/// Events between two looks at the job's cancel flag (and two progress counts).
const CHECK_EVENTS: u64 = 1 << 14;

/// Events between two looks at the clock of a rate-limited source.
const PACE_EVENTS: u64 = 64;

/// The queries `weir run nexmark` runs.
pub const QUERIES: [u32; 8] = [0, 1, 2, 3, 4, 5, 7, 8];

/// How many events a source generates, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// Events in all, across the source's tasks (`None`: until the job is cancelled).
    pub count: Option<u64>,
    /// Events per second in all, each task pacing its share (`None`: as fast as the
    /// generator goes).
    pub rate: Option<u64>,
    /// Events per second of event time: how far apart the events' timestamps are (the
    /// standard generator's `first_rate`, [`EVENT_RATE_DEFAULT`]). More events per
    /// second of event time means more keys in each window.
    pub event_rate: u64,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            count: None,
            rate: None,
            event_rate: EVENT_RATE_DEFAULT,
        }
    }
}

/// The standard generator's events per second of event time.
pub const EVENT_RATE_DEFAULT: u64 = 10_000;

/// The events' base time: 2026-01-01T00:00:00Z in milliseconds. The standard
/// configuration starts at the moment it is made, which would make every run's events
/// (and every task's) differ; a fixed start makes event `i` the same everywhere.
pub const BASE_TIME_MS: u64 = 1_767_225_600_000;

/// The generator of every task: the standard configuration from [`BASE_TIME_MS`], with
/// `event_rate` events per second of event time.
fn generator(event_rate: u64) -> EventGenerator {
    let rate = usize::try_from(event_rate.max(1)).unwrap_or(usize::MAX);
    EventGenerator::new(NexmarkConfig {
        base_time: BASE_TIME_MS,
        first_rate: rate,
        next_rate: rate,
        ..NexmarkConfig::default()
    })
}

/// The events task `task` of `tasks` generates: every `tasks`-th event from `task` on,
/// `None` when there are no more.
fn share(task: u64, tasks: u64, count: Option<u64>) -> Option<u64> {
    count.map(|count| count.saturating_sub(task).div_ceil(tasks))
}

/// The Nexmark events as a source: task `t` of P generates events `t`, `t + P`, … of the
/// standard generator, so the stream holds each of the first `events.count` events once
/// (every event, until the job is cancelled or a `limit` downstream is done, without a
/// count), at most `events.rate` per second in all. A replayable source: its position is
/// the count of events its task generated.
pub fn events(flow: &Dataflow, events: Events) -> Stream<Event> {
    flow.replayable_source("nexmark", move |ctx: &TaskContext| {
        Ok(EventSource::new(
            events,
            ctx.task() as u64,
            ctx.parallelism() as u64,
        ))
    })
}

/// One task's share of the Nexmark events. See [`events`].
#[derive(Debug)]
pub struct EventSource {
    events: Events,
    task: u64,
    tasks: u64,
    generator: EventGenerator,
    /// Events this task generated: its position.
    generated: u64,
    /// Its share of `events.count`.
    mine: Option<u64>,
    /// Its share of `events.rate`, and since when (and from which event) it paces.
    per_task: Option<f64>,
    paced_from: (Instant, u64),
}

impl EventSource {
    /// Task `task` of `tasks`'s share of `events`, from its start.
    pub fn new(events: Events, task: u64, tasks: u64) -> EventSource {
        EventSource {
            events,
            task,
            tasks,
            generator: generator(events.event_rate)
                .with_offset(task)
                .with_step(tasks),
            generated: 0,
            mine: share(task, tasks, events.count),
            per_task: events.rate.map(|rate| rate as f64 / tasks as f64),
            paced_from: (Instant::now(), 0),
        }
    }
}

impl ReplayableSource for EventSource {
    type Record = Event;
    type Position = u64;

    fn position(&self) -> u64 {
        self.generated
    }

    fn seek(&mut self, position: &u64) -> Result<()> {
        if self.mine.is_some_and(|mine| *position > mine) {
            return Err(WeirError::Data {
                message: format!(
                    "nexmark: position {position} is past task {}'s {} events",
                    self.task,
                    self.mine.unwrap_or(0)
                ),
            });
        }
        self.generator = generator(self.events.event_rate)
            .with_offset(self.task + position * self.tasks)
            .with_step(self.tasks);
        self.generated = *position;
        self.paced_from = (Instant::now(), *position);
        Ok(())
    }

    fn pull(&mut self, ctx: &TaskContext, down: &mut dyn Push<Event>, max: u64) -> Result<u64> {
        let mut pushed = 0;
        while pushed < max {
            if self.mine == Some(self.generated) {
                ctx.count_rows_read(self.generated % CHECK_EVENTS);
                break;
            }
            down.push(self.generator.next().expect("the generator never ends"))?;
            self.generated += 1;
            pushed += 1;
            if self.generated.is_multiple_of(CHECK_EVENTS) {
                ctx.count_rows_read(CHECK_EVENTS);
            }
            if let Some(rate) = self.per_task
                && self.generated.is_multiple_of(PACE_EVENTS)
            {
                let (since, from) = self.paced_from;
                pace(ctx, since, self.generated - from, rate);
            }
        }
        Ok(pushed)
    }
}

/// Sleeps until `generated` events are due at `rate` per second since `started`, after
/// letting what the task's outputs hold go out (with `--flush idle`).
fn pace(ctx: &TaskContext, started: Instant, generated: u64, rate: f64) {
    let due = Duration::from_secs_f64(generated as f64 / rate);
    if let Some(ahead) = due.checked_sub(started.elapsed()) {
        ctx.input_idle();
        std::thread::sleep(ahead);
    }
}

/// A bid of q0 and q1: `(auction, bidder, price, date_time, extra)`; q1's price is in
/// thousandths of a euro.
pub type BidRow = (u64, u64, u64, u64, String);

/// A row of q2: `(auction, price)`.
pub type AuctionPrice = (u64, u64);

/// A row of q5: `(window start, window end, auction, bids)`.
pub type HotItem = (i64, i64, u64, u64);

pub use stateful::{CategoryPrice, LocalItem};

/// A row of q7: `(auction, price, bidder, date_time, extra)`.
pub type HighestBid = (u64, u64, u64, u64, String);

/// A row of q8: `(person id, name, window start)`.
pub type NewUser = (u64, String, i64);

/// What a query's rows are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Row {
    /// q0 and q1.
    Bid(BidRow),
    /// q2.
    AuctionPrice(AuctionPrice),
    /// q3.
    LocalItem(LocalItem),
    /// q4 (a changelog: the last row of a category is its answer).
    CategoryPrice(CategoryPrice),
    /// q5.
    HotItem(HotItem),
    /// q7.
    HighestBid(HighestBid),
    /// q8.
    NewUser(NewUser),
}

impl Row {
    /// The row as a CSV line (q1's price with its three decimals).
    pub fn csv(&self, query: u32) -> String {
        match self {
            Row::Bid((auction, bidder, price, date_time, extra)) if query == 1 => format!(
                "{auction},{bidder},{}.{:03},{date_time},{extra}",
                price / 1000,
                price % 1000
            ),
            Row::Bid((auction, bidder, price, date_time, extra)) => {
                format!("{auction},{bidder},{price},{date_time},{extra}")
            }
            Row::AuctionPrice((auction, price)) => format!("{auction},{price}"),
            Row::LocalItem((name, city, state, id)) => format!("{name},{city},{state},{id}"),
            Row::CategoryPrice((category, auctions, total)) => format!(
                "{category},{auctions},{total},{:.3}",
                *total as f64 / (*auctions).max(1) as f64
            ),
            Row::HotItem((start, end, auction, num)) => format!("{start},{end},{auction},{num}"),
            Row::HighestBid((auction, price, bidder, date_time, extra)) => {
                format!("{auction},{price},{bidder},{date_time},{extra}")
            }
            Row::NewUser((id, name, start)) => format!("{id},{name},{start}"),
        }
    }

    /// An order-independent digest of the row, summed (wrapping) over a query's rows to
    /// check them against the model without keeping them.
    pub fn digest(&self) -> u64 {
        let mix = |fields: &[u64]| {
            fields.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, field| {
                (hash ^ field).wrapping_mul(0x0100_0000_01b3)
            })
        };
        match self {
            Row::Bid((auction, bidder, price, date_time, extra)) => {
                mix(&[*auction, *bidder, *price, *date_time, extra.len() as u64])
            }
            Row::AuctionPrice((auction, price)) => mix(&[*auction, *price]),
            Row::LocalItem((name, city, state, id)) => mix(&[
                name.len() as u64,
                city.len() as u64,
                state.len() as u64,
                *id,
            ]),
            Row::CategoryPrice((category, auctions, total)) => mix(&[*category, *auctions, *total]),
            Row::HotItem((start, end, auction, num)) => {
                mix(&[*start as u64, *end as u64, *auction, *num])
            }
            Row::HighestBid((auction, price, bidder, date_time, extra)) => {
                mix(&[*auction, *price, *bidder, *date_time, extra.len() as u64])
            }
            Row::NewUser((id, name, start)) => mix(&[*id, name.len() as u64, *start as u64]),
        }
    }
}

/// The CSV header of a query's rows.
pub fn header(query: u32) -> &'static str {
    match query {
        2 => "auction,price",
        3 => "name,city,state,id",
        4 => "category,auctions,total,avg_price",
        5 => "window_start,window_end,auction,num",
        7 => "auction,price,bidder,date_time,extra",
        8 => "id,name,window_start",
        _ => "auction,bidder,price,date_time,extra",
    }
}

/// Query `query`'s rows of `events`.
///
/// # Errors
///
/// [`WeirError::Usage`] for a query that is not (yet) one of [`QUERIES`].
pub fn query(events: Stream<Event>, query: u32) -> Result<Stream<Row>> {
    Ok(match query {
        3 => stateful::q3(events),
        4 => stateful::q4(events),
        5 => windowed::q5(events),
        7 => windowed::q7(events),
        8 => windowed::q8(events),
        _ => events.flat_map(query_fn(query)?),
    })
}

/// The rows a query's answer is checked by: q4's changelog reduced to its last row per
/// category, the other queries' rows as they are.
pub fn final_rows(rows: Stream<Row>, query: u32) -> Stream<Row> {
    if query == 4 {
        stateful::q4_final(rows)
    } else {
        rows
    }
}

/// Whether `weir run nexmark` runs `query`.
///
/// # Errors
///
/// [`WeirError::Usage`] naming the queries it runs.
pub fn check_query(query: u32) -> Result<()> {
    if QUERIES.contains(&query) {
        return Ok(());
    }
    Err(WeirError::Usage {
        message: format!(
            "--query {query}: weir runs Nexmark q0, q1, q2, q3, q4, q5, q7 and q8 (q6, \
             the average price of each seller's last 10 closed auctions, is not built \
             yet)"
        ),
    })
}

/// What a stateless query (q0–q2) makes of one event: `None` for the events it drops.
///
/// # Errors
///
/// [`WeirError::Usage`] for a query that is not one of them.
fn query_fn(query: u32) -> Result<fn(Event) -> Option<Row>> {
    Ok(match query {
        0 => |event| match event {
            Event::Bid(bid) => Some(Row::Bid(bid_row(bid, 1000))),
            _ => None,
        },
        1 => |event| match event {
            Event::Bid(bid) => Some(Row::Bid(bid_row(bid, 908))),
            _ => None,
        },
        2 => |event| match event {
            Event::Bid(bid) if bid.auction % 123 == 0 => {
                Some(Row::AuctionPrice((bid.auction as u64, bid.price as u64)))
            }
            _ => None,
        },
        _ => {
            check_query(query)?;
            return Err(WeirError::Usage {
                message: format!("--query {query} is not a stateless query"),
            });
        }
    })
}

/// A bid as q0 and q1 write it, its price times `thousandths` / 1000 (kept in
/// thousandths for q1, whose factor is 0.908).
fn bid_row(bid: Bid, thousandths: u64) -> BidRow {
    let price = bid.price as u64;
    let price = if thousandths == 1000 {
        price
    } else {
        price * thousandths
    };
    (
        bid.auction as u64,
        bid.bidder as u64,
        price,
        bid.date_time,
        bid.extra,
    )
}

/// The rows query `query` makes of the first `count` events, and their digest, computed
/// by one plain loop over the generator: the model a job's rows are checked against.
///
/// # Errors
///
/// [`WeirError::Usage`] for a query that is not one of [`QUERIES`].
pub fn model(query: u32, count: u64, event_rate: u64) -> Result<(u64, u64)> {
    model_of(query, || first_events(count, event_rate))
}

/// The rows query `query` makes of the events `events()` gives, and their digest, by one
/// plain loop (`events` is called once or twice).
///
/// # Errors
///
/// [`WeirError::Usage`] for a query that is not one of [`QUERIES`].
pub fn model_of<I: Iterator<Item = Event>>(
    query: u32,
    events: impl Fn() -> I,
) -> Result<(u64, u64)> {
    model_digest(query, events, Row::digest)
}

/// The rows query `query` makes of the first `count` events, and the wrapping sum of a
/// hash of each one's CSV line: what the lines a job committed are checked against.
///
/// # Errors
///
/// As [`model`].
pub fn model_lines(query: u32, count: u64, event_rate: u64) -> Result<(u64, u64)> {
    model_digest(
        query,
        || first_events(count, event_rate),
        |row| line_digest(&row.csv(query)),
    )
}

/// A hash of one CSV line (FNV-1a), summed over a query's lines.
pub fn line_digest(line: &str) -> u64 {
    line.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The rows of query `query` over `events()` by one plain loop: their count and the
/// wrapping sum of `digest` over them.
fn model_digest<I: Iterator<Item = Event>>(
    query: u32,
    events: impl Fn() -> I,
    digest: impl Fn(&Row) -> u64,
) -> Result<(u64, u64)> {
    let windowed = match query {
        3 => Some(stateful::q3_model(events())),
        4 => Some(stateful::q4_model(events())),
        5 => Some(windowed::q5_model(events())),
        7 => Some(windowed::q7_model(events())),
        8 => Some(windowed::q8_model(events())),
        _ => None,
    };
    if let Some(rows) = windowed {
        let digest = rows.iter().fold(0u64, |d, row| d.wrapping_add(digest(row)));
        return Ok((rows.len() as u64, digest));
    }
    let make = query_fn(query)?;
    let (mut rows, mut sum) = (0u64, 0u64);
    for event in events() {
        if let Some(row) = make(event) {
            rows += 1;
            sum = sum.wrapping_add(digest(&row));
        }
    }
    Ok((rows, sum))
}

/// The CSV header of `weir gen nexmark`: every event's type (0 person, 1 auction, 2 bid,
/// as Flink's Nexmark numbers them), its time, then the columns of each type, empty for
/// the others.
pub const EVENTS_HEADER: &str = "event_type,date_time,\
person_id,person_name,person_email_address,person_credit_card,person_city,person_state,person_extra,\
auction_id,auction_item_name,auction_description,auction_initial_bid,auction_reserve,auction_expires,auction_seller,auction_category,auction_extra,\
bid_auction,bid_bidder,bid_price,bid_channel,bid_url,bid_extra";

/// An event as one line of [`EVENTS_HEADER`]'s CSV. The generator's strings hold no
/// commas, quotes or line breaks (letters, digits, spaces, `@`, `.`, `/`, `:` and `_`),
/// which the test of this module checks.
pub fn event_csv(event: &Event) -> String {
    match event {
        Event::Person(p) => format!(
            "0,{},{},{},{},{},{},{},{},,,,,,,,,,,,,,,",
            p.date_time, p.id, p.name, p.email_address, p.credit_card, p.city, p.state, p.extra
        ),
        Event::Auction(a) => format!(
            "1,{},,,,,,,,{},{},{},{},{},{},{},{},{},,,,,,",
            a.date_time,
            a.id,
            a.item_name,
            a.description,
            a.initial_bid,
            a.reserve,
            a.expires,
            a.seller,
            a.category,
            a.extra
        ),
        Event::Bid(b) => format!(
            "2,{},,,,,,,,,,,,,,,,,{},{},{},{},{},{}",
            b.date_time, b.auction, b.bidder, b.price, b.channel, b.url, b.extra
        ),
    }
}

/// Columns of an [`EVENTS_HEADER`] line.
const EVENT_COLUMNS: usize = 24;

/// The event of one line of [`EVENTS_HEADER`]'s CSV ([`event_csv`] in reverse).
///
/// # Errors
///
/// What is wrong with the line: the number of columns, an unknown event type, a column
/// that is not a number where one is due.
pub fn parse_event_csv(line: &str) -> std::result::Result<Event, String> {
    let columns: Vec<&str> = line.split(',').collect();
    if columns.len() != EVENT_COLUMNS {
        return Err(format!(
            "{} columns where an event line has {EVENT_COLUMNS}",
            columns.len()
        ));
    }
    let header: Vec<&str> = EVENTS_HEADER.split(',').collect();
    let number = |at: usize| -> std::result::Result<u64, String> {
        columns[at]
            .parse::<u64>()
            .map_err(|_| format!("{} {:?} is not a number", header[at], columns[at]))
    };
    let id = |at: usize| number(at).map(|n| n as usize);
    let text = |at: usize| columns[at].to_owned();
    let date_time = number(1)?;
    Ok(match columns[0] {
        "0" => Event::Person(Person {
            id: id(2)?,
            name: text(3),
            email_address: text(4),
            credit_card: text(5),
            city: text(6),
            state: text(7),
            date_time,
            extra: text(8),
        }),
        "1" => Event::Auction(Auction {
            id: id(9)?,
            item_name: text(10),
            description: text(11),
            initial_bid: id(12)?,
            reserve: id(13)?,
            date_time,
            expires: number(14)?,
            seller: id(15)?,
            category: id(16)?,
            extra: text(17),
        }),
        "2" => Event::Bid(Bid {
            auction: id(18)?,
            bidder: id(19)?,
            price: id(20)?,
            channel: text(21),
            url: text(22),
            date_time,
            extra: text(23),
        }),
        other => return Err(format!("event_type {other:?} is not 0, 1 or 2")),
    })
}

/// The generator's own rate for `tasks` tasks sharing `count` events: one thread
/// generates task 0's share (every `tasks`-th event) and drops it, and its rate times
/// `tasks` is the ceiling of a job fed by the generator inline on as many cores. (The
/// tasks of a job run in their own processes or on their own cores; threads of this one
/// process would measure its allocator's lock instead, as weir limits malloc's arenas.)
pub fn generator_rate(count: u64, tasks: usize) -> f64 {
    let tasks = tasks.max(1) as u64;
    let mine = share(0, tasks, Some(count)).unwrap_or(0);
    let started = Instant::now();
    let mut sum = 0u64;
    for event in generator(EVENT_RATE_DEFAULT)
        .with_step(tasks)
        .take(usize::try_from(mine).unwrap_or(usize::MAX))
    {
        sum = sum.wrapping_add(std::hint::black_box(&event).timestamp());
    }
    std::hint::black_box(sum);
    mine as f64 * tasks as f64 / started.elapsed().as_secs_f64()
}

/// The first `count` events, in order, from one generator with `event_rate` events per
/// second of event time (for `weir gen nexmark`).
pub fn first_events(count: u64, event_rate: u64) -> impl Iterator<Item = Event> {
    generator(event_rate).take(usize::try_from(count).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir::config::Config;
    use weir::dataflow::runtime;

    fn config(slots: usize) -> Config {
        Config {
            workers: 1,
            slots,
            memory: 16 << 20,
            ..Config::default()
        }
    }

    #[test]
    fn tasks_together_generate_exactly_the_events_of_one_generator() {
        let count = 5_003;
        let mut expected: Vec<String> = first_events(count, EVENT_RATE_DEFAULT)
            .map(|e| event_csv(&e))
            .collect();
        expected.sort_unstable();
        for slots in [1, 3] {
            let flow = Dataflow::new();
            let got = events(
                &flow,
                Events {
                    count: Some(count),
                    rate: None,
                    ..Events::default()
                },
            )
            .map(|e| event_csv(&e))
            .collect();
            runtime::execute(&flow, &config(slots), None).unwrap();
            let mut got = got.take();
            got.sort_unstable();
            assert_eq!(got, expected, "{slots} slots");
        }
    }

    #[test]
    fn a_source_that_seeks_to_a_position_gives_the_events_after_it() {
        // Each task seeks to its 500th event before it starts: the stream holds the
        // events of every task's share but their first 500.
        let count = 5_003;
        for slots in [1, 3u64] {
            let mut expected: Vec<String> = first_events(count, EVENT_RATE_DEFAULT)
                .enumerate()
                .filter(|(i, _)| *i as u64 / slots >= 500)
                .map(|(_, e)| event_csv(&e))
                .collect();
            expected.sort_unstable();
            let flow = Dataflow::new();
            let got = flow
                .replayable_source("nexmark from 500", move |ctx| {
                    let events = Events {
                        count: Some(count),
                        rate: None,
                        ..Events::default()
                    };
                    let mut source =
                        EventSource::new(events, ctx.task() as u64, ctx.parallelism() as u64);
                    source.seek(&500)?;
                    assert_eq!(source.position(), 500);
                    Ok(source)
                })
                .map(|e| event_csv(&e))
                .collect();
            runtime::execute(&flow, &config(slots as usize), None).unwrap();
            let mut got = got.take();
            got.sort_unstable();
            assert_eq!(got, expected, "{slots} slots");
            let mut past_the_end = EventSource::new(
                Events {
                    count: Some(count),
                    rate: None,
                    ..Events::default()
                },
                0,
                slots,
            );
            assert!(past_the_end.seek(&(count + 1)).is_err());
        }
    }

    #[test]
    fn each_query_equals_the_plain_loop() {
        // 150k events span 15 s of event time: windows of every query fire on the way.
        let count = 150_000;
        for query in QUERIES {
            let (rows, digest) = model(query, count, EVENT_RATE_DEFAULT).unwrap();
            assert!(rows > 0, "q{query}");
            let flow = Dataflow::new();
            let source = events(
                &flow,
                Events {
                    count: Some(count),
                    rate: None,
                    ..Events::default()
                },
            );
            let got = final_rows(super::query(source, query).unwrap(), query)
                .map(|row| (1u64, row.digest()))
                .collect();
            let report = runtime::execute(&flow, &config(2), None).unwrap();
            let got = got.take();
            let sum = got.iter().fold(0u64, |a, (_, d)| a.wrapping_add(*d));
            assert_eq!((got.len() as u64, sum), (rows, digest), "q{query}");
            assert_eq!(report.late_records, 0, "q{query}");
            if query == 3 || query == 4 {
                assert!(report.state_bytes > 0, "q{query} kept state");
            }
            if [5, 7, 8].contains(&query) {
                assert!(
                    report.windows_fired > 0,
                    "q{query}: windows fired on the way"
                );
            }
        }
    }

    #[test]
    fn a_rate_limited_source_takes_about_its_time() {
        let flow = Dataflow::new();
        let count = events(
            &flow,
            Events {
                count: Some(2_000),
                rate: Some(20_000),
                ..Events::default()
            },
        )
        .count();
        let started = Instant::now();
        runtime::execute(&flow, &config(2), None).unwrap();
        assert_eq!(count.take().iter().sum::<u64>(), 2_000);
        // 2,000 events at 20,000 a second: not before 0.1 s (an upper bound would be a
        // timing test on a shared machine).
        assert!(started.elapsed() >= Duration::from_millis(95));
    }

    #[test]
    fn an_unbounded_source_ends_at_a_limit() {
        let flow = Dataflow::new();
        let bids = events(&flow, Events::default())
            .flat_map(query_fn(0).unwrap())
            .limit(10)
            .collect();
        runtime::execute(&flow, &config(2), None).unwrap();
        assert_eq!(bids.take().len(), 10);
    }

    #[test]
    fn event_lines_have_every_column_and_no_quoting_to_do() {
        let columns = EVENTS_HEADER.split(',').count();
        let mut types = [0u32; 3];
        for event in first_events(2_000, EVENT_RATE_DEFAULT) {
            let line = event_csv(&event);
            assert_eq!(line.split(',').count(), columns, "{line}");
            assert!(!line.contains(['"', '\n', '\r']), "{line}");
            types[line.as_bytes()[0] as usize - usize::from(b'0')] += 1;
        }
        assert!(types.iter().all(|&n| n > 0), "{types:?}");
    }

    #[test]
    fn an_event_whose_time_overflows_fails_the_job_naming_it() {
        let mut bid = first_events(10, EVENT_RATE_DEFAULT)
            .find_map(|event| match event {
                Event::Bid(bid) => Some(bid),
                _ => None,
            })
            .unwrap();
        bid.date_time = u64::MAX;
        let flow = Dataflow::new();
        let bad = Event::Bid(bid);
        let source = flow.source_fn("bad", move |_| Ok(std::iter::once(Ok(bad.clone()))));
        let _rows = super::query(source, 7).unwrap().collect();
        let error = runtime::execute(&flow, &config(1), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("overflows the event time"), "{error}");
        assert!(error.contains(&u64::MAX.to_string()), "{error}");
    }

    #[test]
    fn queries_not_built_are_refused_with_the_reason() {
        let error = check_query(6).unwrap_err().to_string();
        assert!(error.contains("q6, the average price"), "{error}");
    }

    #[test]
    fn event_lines_parse_back_into_their_events_and_bad_ones_say_why() {
        for event in first_events(3_000, EVENT_RATE_DEFAULT) {
            let line = event_csv(&event);
            assert_eq!(parse_event_csv(&line).unwrap(), event, "{line}");
        }
        let error = parse_event_csv("2,17,,,").unwrap_err();
        assert!(error.contains("5 columns"), "{error}");
        let bid = first_events(100, EVENT_RATE_DEFAULT)
            .map(|event| event_csv(&event))
            .find(|line| line.starts_with("2,"))
            .unwrap();
        let bad_time = bid.replacen(",", ",x", 1);
        let error = parse_event_csv(&bad_time).unwrap_err();
        assert!(error.contains("date_time"), "{error}");
        let error = parse_event_csv(&bid.replacen('2', "7", 1)).unwrap_err();
        assert!(error.contains("event_type"), "{error}");
    }

    #[test]
    fn q1_writes_the_exact_decimal_price() {
        let row = Row::Bid((1, 2, 1234 * 908, 5, "x".to_owned()));
        assert_eq!(row.csv(1), "1,2,1120.472,5,x");
    }
}
