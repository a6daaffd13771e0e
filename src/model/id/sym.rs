//! [`Sym`]: a shared string behind one thin pointer.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// A shared immutable string behind a thin pointer (the `Arc<str>` it
/// wraps can be handed to a finding without copying the text). Equality,
/// hash and order are the string's; equality tries the pointer first, which
/// decides for names from the same interner.
#[derive(Clone)]
pub struct Sym(Arc<Arc<str>>);

impl Sym {
    pub fn new(s: &str) -> Sym {
        Sym(Arc::new(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text as an `Arc<str>`, shared, not copied.
    pub fn to_arc(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    pub fn ptr_eq(&self, other: &Sym) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Sym {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Sym {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Sym {
    fn from(s: &str) -> Sym {
        Sym::new(s)
    }
}

impl PartialEq for Sym {
    fn eq(&self, other: &Sym) -> bool {
        self.ptr_eq(other) || self.as_str() == other.as_str()
    }
}

impl Eq for Sym {}

impl Hash for Sym {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialOrd for Sym {
    fn partial_cmp(&self, other: &Sym) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sym {
    fn cmp(&self, other: &Sym) -> Ordering {
        if self.ptr_eq(other) {
            Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_compare_as_strings_whether_shared_or_not() {
        let a = Sym::new("Sales");
        let shared = a.clone();
        let separate = Sym::new("Sales");
        assert!(a.ptr_eq(&shared) && !a.ptr_eq(&separate));
        assert_eq!(a, separate);
        assert_eq!(a.cmp(&separate), Ordering::Equal);
        assert!(a < Sym::new("Support"));
        assert_eq!(&*a.to_arc(), "Sales");
        let set: std::collections::HashSet<Sym> = [separate].into_iter().collect();
        assert!(set.contains("Sales"));
        assert_eq!(std::mem::size_of::<Sym>(), 8);
        assert_eq!(std::mem::size_of::<Option<Sym>>(), 8);
    }
}
