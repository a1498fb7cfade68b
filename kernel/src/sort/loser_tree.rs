//! A loser tree: the k-way merge's tournament.
//!
//! ```text
//!                  [0] overall winner
//!                  [1] loser of the final
//!            [2]               [3]          internal nodes hold losers
//!        leaf k+0  leaf k+1  leaf k+2  leaf k+3   (leaves are the inputs)
//! ```
//!
//! After the winner advances, only its path to the root is replayed: ⌈log2 k⌉ comparisons
//! per record, each against the loser stored at the node, never against a sibling.

/// Tournament over `k` inputs, compared by a caller-supplied `less(a, b)`.
#[derive(Debug, Clone)]
pub(crate) struct LoserTree {
    nodes: Vec<usize>,
}

impl LoserTree {
    /// Plays the whole tournament once.
    pub(crate) fn new(k: usize, less: &mut impl FnMut(usize, usize) -> bool) -> LoserTree {
        assert!(k > 0, "a merge needs an input");
        let mut nodes = vec![0; k];
        // winners[n] for the internal node n; leaves k..2k are the inputs themselves.
        let mut winners = vec![0; 2 * k];
        for (i, winner) in winners[k..].iter_mut().enumerate() {
            *winner = i;
        }
        for n in (1..k).rev() {
            let (a, b) = (winners[2 * n], winners[2 * n + 1]);
            let (win, lose) = if less(b, a) { (b, a) } else { (a, b) };
            winners[n] = win;
            nodes[n] = lose;
        }
        nodes[0] = if k == 1 { 0 } else { winners[1] };
        LoserTree { nodes }
    }

    /// The input whose head is the smallest.
    #[inline]
    pub(crate) fn winner(&self) -> usize {
        self.nodes[0]
    }

    /// Replays the winner's path after its head changed.
    #[inline]
    pub(crate) fn replay(&mut self, less: &mut impl FnMut(usize, usize) -> bool) {
        let k = self.nodes.len();
        let mut winner = self.nodes[0];
        let mut node = (winner + k) / 2;
        while node > 0 {
            let loser = self.nodes[node];
            if less(loser, winner) {
                self.nodes[node] = winner;
                winner = loser;
            }
            node /= 2;
        }
        self.nodes[0] = winner;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_like_a_sort() {
        for k in 1..12usize {
            let inputs: Vec<Vec<u32>> = (0..k)
                .map(|i| {
                    (0..(i * 7 % 5 + 1) as u32)
                        .map(|j| j * (i as u32 + 1) % 13)
                        .collect()
                })
                .map(|mut v: Vec<u32>| {
                    v.sort();
                    v
                })
                .collect();
            let mut heads = vec![0usize; k];
            let head =
                |heads: &[usize], i: usize| inputs[i].get(heads[i]).copied().unwrap_or(u32::MAX);
            let mut tree = LoserTree::new(k, &mut |a, b| head(&heads, a) < head(&heads, b));
            let mut merged = Vec::new();
            loop {
                let w = tree.winner();
                let value = head(&heads, w);
                if value == u32::MAX {
                    break;
                }
                merged.push(value);
                heads[w] += 1;
                tree.replay(&mut |a, b| head(&heads, a) < head(&heads, b));
            }
            let mut expected: Vec<u32> = inputs.concat();
            expected.sort();
            assert_eq!(merged, expected, "k = {k}");
        }
    }
}
