//! [`Topic`]: a topic name interned for the life of the process.

use std::cmp::Ordering;
use std::fmt;
use std::sync::{OnceLock, RwLock};

/// A topic name, interned for the life of the process (the set of topics
/// a process reads is small and fixed by its configuration and files).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic(u16);

fn topic_table() -> &'static RwLock<Vec<&'static str>> {
    static TABLE: OnceLock<RwLock<Vec<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(Vec::new()))
}

impl Topic {
    /// The topic called `name`; the first call for a name records it.
    ///
    /// # Panics
    /// After 65,536 distinct topic names in one process.
    pub fn new(name: &str) -> Topic {
        let table = topic_table();
        let find = |t: &[&str]| t.iter().position(|n| *n == name);
        if let Some(i) = find(&table.read().unwrap_or_else(|e| e.into_inner())) {
            return Topic(i as u16);
        }
        let mut t = table.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = find(&t) {
            return Topic(i as u16);
        }
        let i = u16::try_from(t.len()).expect("at most 65,536 topic names per process");
        t.push(Box::leak(name.to_owned().into_boxed_str()));
        Topic(i)
    }

    pub fn as_str(self) -> &'static str {
        topic_table().read().unwrap_or_else(|e| e.into_inner())[usize::from(self.0)]
    }
}

impl From<&str> for Topic {
    fn from(s: &str) -> Topic {
        Topic::new(s)
    }
}

impl From<String> for Topic {
    fn from(s: String) -> Topic {
        Topic::new(&s)
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Topic) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// By name, like the strings they stand for.
impl Ord for Topic {
    fn cmp(&self, other: &Topic) -> Ordering {
        if self.0 == other.0 {
            Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_intern_by_name() {
        let a = Topic::new("id-test.topic-a");
        assert_eq!(a, Topic::from("id-test.topic-a".to_string()));
        assert_eq!(a.as_str(), "id-test.topic-a");
        let b = Topic::new("id-test.topic-b");
        assert_ne!(a, b);
        assert!(a < b);
    }
}
