//! Tees: one stream read by two consumers, in the stream's own chain.
//!
//! ```text
//!   generate ─map─▶ tee ─┬─▶ filter ─▶ count            one stage: each record is pushed
//!                        └─▶ key_by ══hash══▶ aggregate  down the first branch (a clone),
//!                                                        then down the second
//! ```
//!
//! A tee buffers nothing: a record goes down its branches one after the other by
//! function call, as it goes down any chain. Each branch goes on as a stream of its own
//! and ends in its own sink or exchange; the tee's stage is registered when both have
//! ended, with all of their sinks, exchanges and kernel operators (each with its memory
//! share). When a task builds that stage, each branch's chain is built from its sink up
//! to the tee, whose place in the branch hands the branch's [`Push`] to the task context;
//! then the chain above the tee is built on a [`TeePush`] of the branches' pushes. Its
//! driver runs last, after the drivers of any input a branch was merged with (a union's
//! other stream), as a join reads its build side first.
//!
//! The limit: the branches advance in step, so the slower consumer paces both. Two
//! streams from one tee must therefore never meet again — a join or union of them,
//! directly or after exchanges: the meeting operator reads one input to its end before
//! it reads the other, and the tee could run ahead of the waiting branch only by holding
//! all of its records, so the job would deadlock once the exchanges' buffers are full.
//! Such a program is refused when it is built ([`super::runtime::execute`] fails with a
//! usage error before anything runs); read the input twice instead.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::graph::{Ending, Graph, Stage};
use super::operators::Sequence;
use super::{Barrier, Data, Driver, Push, Stream, Watermark};
use crate::error::Result;

/// A tee's identity in its program.
pub(crate) type TeeId = usize;

/// Branches a tee has.
const TEE_BRANCHES: usize = 2;

/// A stream's place as a branch of a tee.
pub(crate) struct Branch {
    tee: Rc<RefCell<dyn BranchEnds>>,
    index: usize,
}

/// A tee waiting for its branches' ends (type-erased: a branch's records may have any
/// type by the time it ends).
trait BranchEnds {
    /// Branch `index` has ended in `ending`; the last one registers the tee's stage.
    fn end_branch(&mut self, index: usize, ending: Ending);
}

struct TeeNode<T> {
    id: TeeId,
    /// The stream being teed, until the last branch ends.
    upstream: Option<Stream<T>>,
    ends: Vec<Option<Ending>>,
}

impl<T: Data + Clone> BranchEnds for TeeNode<T> {
    fn end_branch(&mut self, index: usize, ending: Ending) {
        assert!(self.ends[index].is_none(), "a tee's branch ends once");
        self.ends[index] = Some(ending);
        if self.ends.iter().all(Option::is_some) {
            let ends = self
                .ends
                .iter_mut()
                .map(|e| e.take().expect("ended"))
                .collect();
            let upstream = self.upstream.take().expect("a tee closes once");
            close(self.id, upstream, ends);
        }
    }
}

/// Registers the chain `upstream` ending in the tee `id` whose branches ended in `ends`:
/// a stage when `upstream` is not itself a branch of another tee.
fn close<T: Data + Clone>(id: TeeId, upstream: Stream<T>, ends: Vec<Ending>) {
    upstream.graph.borrow_mut().close_tee();
    let branches = ends.len();
    let (mut inputs, mut outputs) = (upstream.inputs, Vec::new());
    let (mut memory_ops, mut io_segments) = (upstream.memory_ops, upstream.io_segments);
    let (mut names, mut opens) = (Vec::new(), Vec::new());
    for end in ends {
        assert_eq!(
            end.stage.parallelism, upstream.parallelism,
            "a branch keeps its tee's tasks"
        );
        inputs.extend(end.inputs);
        outputs.extend(end.outputs);
        memory_ops.extend(end.stage.memory_ops);
        io_segments += end.stage.io_segments;
        names.push(end.stage.name);
        opens.push(end.stage.open);
    }
    let upstream_open = upstream.open;
    let stage = Stage {
        name: format!("{} → tee[{}]", upstream.name, names.join(" | ")),
        parallelism: upstream.parallelism,
        memory_ops,
        io_segments,
        open: Arc::new(move |ctx| {
            let mut drivers = Vec::with_capacity(branches + 1);
            for open in &opens {
                drivers.push(open(ctx)?);
            }
            let heads = (0..branches)
                .map(|index| ctx.take_branch_head::<T>(id, index))
                .collect();
            drivers.push(upstream_open(ctx, Box::new(TeePush { heads }))?);
            Ok(Box::new(Sequence(drivers)) as Box<dyn Driver>)
        }),
    };
    let ending = Ending {
        stage,
        inputs,
        outputs,
    };
    end(&upstream.graph, upstream.branch, ending);
}

/// Registers a chain that ended: as a stage, or as the end of the tee branch it is.
pub(crate) fn end(graph: &Rc<RefCell<Graph>>, branch: Option<Branch>, ending: Ending) {
    match branch {
        None => graph.borrow_mut().add_stage(ending),
        Some(branch) => branch.tee.borrow_mut().end_branch(branch.index, ending),
    }
}

/// The tee branch a stream merged from `left` and `right` is (at most one of them may be
/// one); refuses, in the program's graph, two streams from one tee and two branches of
/// different tees. See the module documentation.
pub(crate) fn merged_branch<A, B>(
    what: &str,
    left: &mut Stream<A>,
    right: &mut Stream<B>,
) -> Option<Branch> {
    if let Some(tee) = left.tees.iter().find(|t| right.tees.contains(t)) {
        left.graph.borrow_mut().refuse(format!(
            "a {what} of two streams from one tee (tee {tee}) would deadlock: the {what} reads \
             one input to its end before the other, and the tee sends each record to both at \
             once; read the input twice instead of teeing it"
        ));
    }
    match (left.branch.take(), right.branch.take()) {
        (Some(branch), Some(_)) => {
            left.graph.borrow_mut().refuse(format!(
                "a {what} of branches of two tees in one chain is not supported: rebalance \
                 one of them first"
            ));
            Some(branch)
        }
        (left, right) => left.or(right),
    }
}

impl<T: Data + Clone> Stream<T> {
    /// Two streams of this stream's records, for two consumers (a count and a sum, two
    /// aggregations, two sinks): in each task, every record is pushed down the first
    /// branch (a clone) and then down the second, in the stream's chain, so nothing is
    /// buffered and the records are computed once; the slower branch paces both. Tee a
    /// branch again for more consumers. End both branches in a sink: a program with a
    /// branch left over fails to run with a usage error.
    ///
    /// The two branches (or streams built from them, across any exchanges) must not be
    /// joined or unioned with each other: that operator reads one input to its end before
    /// the other, which a tee cannot feed without holding the whole stream, so such a
    /// program is refused ([`runtime::execute`](super::runtime::execute) fails with a
    /// usage error before anything runs). For a self-join, read the input twice.
    pub fn tee(self) -> (Stream<T>, Stream<T>) {
        let graph = Rc::clone(&self.graph);
        let id = graph.borrow_mut().open_tee();
        let parallelism = self.parallelism;
        let mut tees = self.tees.clone();
        tees.push(id);
        let tee: Rc<RefCell<dyn BranchEnds>> = Rc::new(RefCell::new(TeeNode {
            id,
            upstream: Some(self),
            ends: (0..TEE_BRANCHES).map(|_| None).collect(),
        }));
        let branch = |index: usize| Stream {
            graph: Rc::clone(&graph),
            open: Arc::new(move |ctx, down| {
                ctx.put_branch_head(id, index, down);
                Ok(Box::new(Sequence(Vec::new())) as Box<dyn Driver>)
            }),
            inputs: Vec::new(),
            parallelism,
            memory_ops: Vec::new(),
            io_segments: 0,
            name: "tee".to_string(),
            branch: Some(Branch {
                tee: Rc::clone(&tee),
                index,
            }),
            tees: tees.clone(),
        };
        (branch(0), branch(1))
    }
}

/// The tee's place in its upstream chain: each record to every branch, by clone but the
/// last; the end to every branch.
struct TeePush<T> {
    heads: Vec<Box<dyn Push<T>>>,
}

impl<T: Data + Clone> Push<T> for TeePush<T> {
    #[inline]
    fn push(&mut self, record: T) -> Result<()> {
        let (last, others) = self.heads.split_last_mut().expect("a tee has branches");
        for head in others {
            head.push(record.clone())?;
        }
        last.push(record)
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        for head in &mut self.heads {
            head.watermark(watermark)?;
        }
        Ok(())
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        for head in &mut self.heads {
            head.barrier(barrier)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        for head in &mut self.heads {
            head.finish()?;
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.heads.iter().all(|head| head.is_done())
    }
}
