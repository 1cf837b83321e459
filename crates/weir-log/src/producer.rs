//! Idempotent producers: per (partition, producer id) the epoch and the last five batches'
//! sequence ranges, so a retried batch is recognised and not appended twice.
//!
//! Kept in the writer, checked before anything of a unit is written, and stored in table
//! `producers` in the same transaction as the batches, so it survives a restart exactly as
//! the batches do.

use std::collections::VecDeque;

use redb::TableDefinition;

use crate::batch::BatchHeader;
use crate::error::{LogError, Result};

/// (topic id, partition, producer id) -> [`ProducerState`].
pub(crate) const PRODUCERS: TableDefinition<'_, &[u8; 16], &[u8]> =
    TableDefinition::new("producers");

/// How many recent batches per producer and partition are remembered, as Kafka does.
const RECENT: usize = 5;

pub(crate) fn producer_key(topic: u32, partition: u32, producer_id: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0..4].copy_from_slice(&topic.to_be_bytes());
    k[4..8].copy_from_slice(&partition.to_be_bytes());
    k[8..16].copy_from_slice(&(producer_id as u64).to_be_bytes());
    k
}

/// A recent batch: its sequence range and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecentBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

/// What one producer last wrote to one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    epoch: i16,
    recent: VecDeque<RecentBatch>,
}

/// The verdict on an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sequence {
    /// The next batch in sequence: append it.
    Next,
    /// A retry of a batch already written at these offsets: answer with them, write nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, as Kafka's do.
    let span = h.last_offset_delta as i64;
    ((h.base_sequence as i64 + span) % (i32::MAX as i64 + 1)) as i32
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

impl ProducerState {
    /// Checks a batch of this producer against what it wrote before.
    pub(crate) fn check(
        state: Option<&Self>,
        h: &BatchHeader,
        topic: &str,
        partition: i32,
    ) -> Result<Sequence> {
        let out_of_order = |expected: i32| LogError::OutOfOrderSequence {
            topic: topic.to_string(),
            partition,
            producer_id: h.producer_id,
            expected,
            got: h.base_sequence,
        };
        let Some(s) = state else {
            // A producer new to this partition starts at sequence 0.
            return if h.base_sequence == 0 {
                Ok(Sequence::Next)
            } else {
                Err(out_of_order(0))
            };
        };
        if h.producer_epoch < s.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: s.epoch,
            });
        }
        if h.producer_epoch > s.epoch {
            // A bumped epoch restarts the sequence.
            return if h.base_sequence == 0 {
                Ok(Sequence::Next)
            } else {
                Err(out_of_order(0))
            };
        }
        let last = last_seq(h);
        if let Some(b) = s
            .recent
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(Sequence::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            });
        }
        let expected = s.recent.back().map(|b| next_seq(b.last_seq)).unwrap_or(0);
        if h.base_sequence != expected {
            return Err(out_of_order(expected));
        }
        Ok(Sequence::Next)
    }

    /// Remembers a batch appended at `base_offset`.
    pub(crate) fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_epoch != self.epoch {
            self.epoch = h.producer_epoch;
            self.recent.clear();
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(RecentBatch {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset,
            last_offset: base_offset + i64::from(h.last_offset_delta),
        });
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 + self.recent.len() * 24);
        v.extend_from_slice(&self.epoch.to_be_bytes());
        for b in &self.recent {
            v.extend_from_slice(&b.first_seq.to_be_bytes());
            v.extend_from_slice(&b.last_seq.to_be_bytes());
            v.extend_from_slice(&b.base_offset.to_be_bytes());
            v.extend_from_slice(&b.last_offset.to_be_bytes());
        }
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Self> {
        let epoch = i16::from_be_bytes(v.get(0..2)?.try_into().ok()?);
        let mut recent = VecDeque::with_capacity(RECENT);
        for c in v.get(2..)?.chunks(24) {
            let c: &[u8; 24] = c.try_into().ok()?;
            let i32_at = |at: usize| i32::from_be_bytes(c[at..at + 4].try_into().expect("4"));
            let i64_at = |at: usize| i64::from_be_bytes(c[at..at + 8].try_into().expect("8"));
            recent.push_back(RecentBatch {
                first_seq: i32_at(0),
                last_seq: i32_at(4),
                base_offset: i64_at(8),
                last_offset: i64_at(16),
            });
        }
        Some(Self { epoch, recent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, Record};

    fn header(epoch: i16, seq: i32, records: usize) -> BatchHeader {
        let recs: Vec<Record> = (0..records).map(|i| Record::value(i as i64, "v")).collect();
        let mut h = BatchHeader::parse(&batch::encode(&recs)).unwrap();
        h.producer_id = 7;
        h.producer_epoch = epoch;
        h.base_sequence = seq;
        h
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut s = ProducerState::default();
        let h0 = header(0, 0, 3);
        assert_eq!(
            ProducerState::check(None, &h0, "t", 0).unwrap(),
            Sequence::Next
        );
        assert!(ProducerState::check(None, &header(0, 5, 1), "t", 0).is_err());
        s.record(&h0, 100);
        let h1 = header(0, 3, 2);
        assert_eq!(
            ProducerState::check(Some(&s), &h1, "t", 0).unwrap(),
            Sequence::Next
        );
        s.record(&h1, 103);
        assert_eq!(
            ProducerState::check(Some(&s), &h0, "t", 0).unwrap(),
            Sequence::Duplicate {
                base_offset: 100,
                last_offset: 102
            }
        );
        let gap = ProducerState::check(Some(&s), &header(0, 9, 1), "t", 0).unwrap_err();
        assert!(
            matches!(
                gap,
                LogError::OutOfOrderSequence {
                    expected: 5,
                    got: 9,
                    ..
                }
            ),
            "{gap}"
        );
        assert_eq!(
            ProducerState::check(Some(&s), &header(1, 0, 1), "t", 0).unwrap(),
            Sequence::Next
        );
        s.record(&header(1, 0, 1), 105);
        let stale = ProducerState::check(Some(&s), &header(0, 5, 1), "t", 0).unwrap_err();
        assert!(
            matches!(stale, LogError::InvalidProducerEpoch { .. }),
            "{stale}"
        );
        assert_eq!(ProducerState::decode(&s.encode()), Some(s));
    }

    #[test]
    fn remembers_only_the_last_five_batches() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&header(0, i, 1), i64::from(i));
        }
        assert!(ProducerState::check(Some(&s), &header(0, 0, 1), "t", 0).is_err());
        assert!(matches!(
            ProducerState::check(Some(&s), &header(0, 2, 1), "t", 0),
            Ok(Sequence::Duplicate { base_offset: 2, .. })
        ));
    }
}
