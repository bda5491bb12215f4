//! Generational slab: tokens carry a generation so stale readiness events (same batch, or a late
//! io_uring completion) for a reused slot are ignored.

pub(crate) struct Slab<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
    len: usize,
}

/// (index, generation)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub idx: u32,
    pub gen: u32,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn insert(&mut self, v: T) -> Key {
        self.len += 1;
        if let Some(idx) = self.free.pop() {
            let s = &mut self.slots[idx as usize];
            s.0 = s.0.wrapping_add(1);
            s.1 = Some(v);
            return Key { idx, gen: s.0 };
        }
        let idx = self.slots.len() as u32;
        self.slots.push((0, Some(v)));
        Key { idx, gen: 0 }
    }
    pub(crate) fn get_mut(&mut self, k: Key) -> Option<&mut T> {
        match self.slots.get_mut(k.idx as usize) {
            Some((g, Some(v))) if *g == k.gen => Some(v),
            _ => None,
        }
    }
    pub(crate) fn remove(&mut self, k: Key) -> Option<T> {
        match self.slots.get_mut(k.idx as usize) {
            Some((g, slot @ Some(_))) if *g == k.gen => {
                self.len -= 1;
                self.free.push(k.idx);
                slot.take()
            }
            _ => None,
        }
    }
    /// Take the value out temporarily, leaving the slot reserved (put it back with `restore`).
    pub(crate) fn take(&mut self, k: Key) -> Option<T> {
        match self.slots.get_mut(k.idx as usize) {
            Some((g, slot @ Some(_))) if *g == k.gen => slot.take(),
            _ => None,
        }
    }
    pub(crate) fn restore(&mut self, k: Key, v: T) {
        if let Some((g, slot)) = self.slots.get_mut(k.idx as usize) {
            if *g == k.gen {
                *slot = Some(v);
            }
        }
    }
    /// Release a slot emptied by `take` without restoring it.
    pub(crate) fn release(&mut self, k: Key) {
        if let Some((g, slot)) = self.slots.get_mut(k.idx as usize) {
            if *g == k.gen && slot.is_none() {
                self.len -= 1;
                self.free.push(k.idx);
            }
        }
    }
    /// Keys of the values matching `pred` (no allocation when none match).
    pub(crate) fn keys_where(&self, pred: impl Fn(&T) -> bool) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.as_ref().is_some_and(&pred))
            .map(|(i, (g, _))| Key {
                idx: i as u32,
                gen: *g,
            })
            .collect()
    }
    pub(crate) fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.is_some())
            .map(|(i, (g, _))| Key {
                idx: i as u32,
                gen: *g,
            })
            .collect()
    }
}
