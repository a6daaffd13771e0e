//! Which partition a correlation key belongs to.
//!
//! The join sees a worker's events together only when they sit in the
//! partition `kafka.partitioner` gives their correlation key (the input
//! topics are co-partitioned): producers that key by the correlation key
//! with the same partitioner put them there. A partition task counts the
//! records it finds in another partition than their key's
//! (`driftwatch_input_records_misplaced_total`).

use crate::model::event::Key;

/// How a key is mapped to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// The Java client's default for keyed records (and librdkafka's
    /// `murmur2_random`): murmur2 of the key, made positive, modulo the
    /// partition count.
    Murmur2,
    /// librdkafka's default (`consistent_random`) for keyed records: CRC-32
    /// of the key modulo the partition count.
    Crc32,
}

impl Partitioner {
    /// Parses a configuration value.
    pub fn parse(name: &str) -> Option<Partitioner> {
        match name {
            "murmur2" => Some(Partitioner::Murmur2),
            "crc32" => Some(Partitioner::Crc32),
            _ => None,
        }
    }

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2",
            Partitioner::Crc32 => "crc32",
        }
    }

    /// The librdkafka `partitioner` property of a producer that partitions
    /// keyed records the same way.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2_random",
            Partitioner::Crc32 => "consistent_random",
        }
    }

    /// The partition of `key` among `partitions` (at least 1).
    pub fn partition(self, key: &Key, partitions: i32) -> i32 {
        self.partition_of_bytes(key.id().as_bytes(), partitions)
    }

    /// The partition of a Kafka key among `partitions` (at least 1).
    pub fn partition_of_bytes(self, bytes: &[u8], partitions: i32) -> i32 {
        let n = partitions.max(1) as u32;
        let hash = match self {
            Partitioner::Murmur2 => (murmur2(bytes) & 0x7fff_ffff) as u32,
            Partitioner::Crc32 => crc32fast::hash(bytes),
        };
        (hash % n) as i32
    }
}

/// Kafka's murmur2 (32-bit, seed 0x9747b28c), as the Java client computes
/// it for the default partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's own test vectors (clients, UtilsTest.testMurmur2).
        for (text, want) in [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ] {
            assert_eq!(murmur2(text.as_bytes()), want, "{text}");
        }
    }

    /// librdkafka's `consistent` partitioner: CRC-32 (IEEE) of the key
    /// modulo the partition count.
    #[test]
    fn crc32_is_the_ieee_checksum() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            Partitioner::Crc32.partition_of_bytes(b"123456789", 7),
            (0xCBF4_3926u32 % 7) as i32
        );
    }

    #[test]
    fn partitions_are_in_range_and_by_the_key_id() {
        for p in [Partitioner::Murmur2, Partitioner::Crc32] {
            for n in [1, 2, 3, 7, 64] {
                for id in ["W000001", "W000002", "acct-9", ""] {
                    let got = p.partition(&Key::worker(id), n);
                    assert!((0..n).contains(&got));
                    assert_eq!(got, p.partition_of_bytes(id.as_bytes(), n));
                }
            }
        }
        // An uncorrelated account routes by its account id.
        assert_eq!(
            Partitioner::Murmur2.partition(&Key::account("acct-9"), 7),
            Partitioner::Murmur2.partition_of_bytes(b"acct-9", 7)
        );
        assert_eq!(Partitioner::parse("murmur2"), Some(Partitioner::Murmur2));
        assert_eq!(Partitioner::parse("crc32"), Some(Partitioner::Crc32));
        assert_eq!(Partitioner::parse("random"), None);
    }
}
