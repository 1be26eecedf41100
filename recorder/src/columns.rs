//! Arrow column helpers every row definition builds its columns with: lean
//! builders for the storm-sized columns. A leaf: no stage.

use std::sync::Arc;

use arrow::array::ArrayRef;

use crate::decode::Comm;

/// A text column holding `value` on each of `n` rows, built in one go (a
/// builder append per row copies the few bytes through a call each).
pub fn repeated(value: &str, n: usize) -> ArrayRef {
    let offsets = arrow::buffer::OffsetBuffer::<i32>::from_lengths(std::iter::repeat_n(value.len(), n));
    Arc::new(arrow::array::StringArray::new(offsets, arrow::buffer::Buffer::from(value.repeat(n).into_bytes()), None))
}

/// An address as text, written into one reused buffer: no formatting machinery
/// and no allocation per address, which a connect storm would pay per row
/// (BENCHMARKS.md). The last address is remembered: asked for again, its text
/// is not rebuilt.
#[derive(Default)]
pub struct IpText(String, Option<std::net::IpAddr>);

impl IpText {
    pub fn get(&mut self, ip: &std::net::IpAddr) -> &str {
        if self.1 == Some(*ip) {
            return &self.0;
        }
        self.1 = Some(*ip);
        self.0.clear();
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.0.push('.');
                    }
                    if o >= 100 {
                        self.0.push(char::from(b'0' + o / 100));
                    }
                    if o >= 10 {
                        self.0.push(char::from(b'0' + o / 10 % 10));
                    }
                    self.0.push(char::from(b'0' + o % 10));
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::fmt::Write;
                let _ = write!(self.0, "{v6}");
            }
        }
        &self.0
    }
}

/// A column built with plain vector pushes, inlined: the arrow builders'
/// per-value calls are a large share of building a batch under a storm
/// (BENCHMARKS.md).
pub struct Prim<T: arrow::datatypes::ArrowPrimitiveType> {
    values: Vec<T::Native>,
    nulls: arrow::array::builder::NullBufferBuilder,
}

impl<T: arrow::datatypes::ArrowPrimitiveType> Prim<T> {
    pub fn with_capacity(n: usize) -> Self {
        Prim { values: Vec::with_capacity(n), nulls: arrow::array::builder::NullBufferBuilder::new(n) }
    }
    #[inline(always)]
    pub fn push(&mut self, v: T::Native) {
        self.values.push(v);
        self.nulls.append_non_null();
    }
    #[inline(always)]
    pub fn push_opt(&mut self, v: Option<T::Native>) {
        match v {
            Some(v) => self.push(v),
            None => {
                self.values.push(T::Native::default());
                self.nulls.append_null();
            }
        }
    }
    pub fn finish(mut self) -> arrow::array::PrimitiveArray<T> {
        arrow::array::PrimitiveArray::new(self.values.into(), self.nulls.finish())
    }
}

/// A text column built like [`Prim`].
pub struct Text {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    nulls: arrow::array::builder::NullBufferBuilder,
}

impl Text {
    pub fn with_capacity(n: usize, bytes_per_row: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        Text { offsets, bytes: Vec::with_capacity(n * bytes_per_row), nulls: arrow::array::builder::NullBufferBuilder::new(n) }
    }
    #[inline(always)]
    pub fn push(&mut self, v: &str) {
        self.bytes.extend_from_slice(v.as_bytes());
        self.end_value();
        self.nulls.append_non_null();
    }
    #[inline(always)]
    pub fn push_opt(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.push(v),
            None => {
                self.end_value();
                self.nulls.append_null();
            }
        }
    }
    /// The offset that ends the value just pushed (empty for a null).
    #[inline(always)]
    fn end_value(&mut self) {
        self.offsets.push(i32::try_from(self.bytes.len()).expect("a batch holds less than 2 GiB of text per column"));
    }
    pub fn finish(mut self) -> ArrayRef {
        let offsets = arrow::buffer::OffsetBuffer::new(self.offsets.into());
        // SAFETY: `bytes` is a concatenation of `&str`s (valid UTF-8), each
        // offset is the end of one of them (non-decreasing, within `bytes`,
        // checked to fit i32 when pushed), and there is one null bit per value;
        // validating it all again would cost the recorder under a storm.
        Arc::new(unsafe { arrow::array::StringArray::new_unchecked(offsets, self.bytes.into(), self.nulls.finish()) })
    }
}

/// A process name as text: the last one is remembered (a storm repeats one
/// name row after row), so its bytes are not scanned again.
#[derive(Default)]
pub struct CommText(String, Option<Comm>);

impl CommText {
    pub fn get(&mut self, comm: &Comm) -> &str {
        if self.1.as_ref() != Some(comm) {
            self.0.clear();
            self.0.push_str(&comm.text());
            self.1 = Some(*comm);
        }
        &self.0
    }
}


#[cfg(test)]
mod tests {
    use super::{CommText, IpText};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn comm_text_is_the_name_asked_for_not_the_last_one() {
        let mut t = CommText::default();
        for name in ["curl", "curl", "bash", "curl", "", "a-name-of-15-ch"] {
            assert_eq!(t.get(&name.into()), name);
        }
    }

    #[test]
    fn ip_text_is_what_std_prints() {
        let mut t = IpText::default();
        for o in 0..=255u8 {
            for ip in [Ipv4Addr::new(o, 0, 9, 10), Ipv4Addr::new(10, o, 99, o), Ipv4Addr::new(10, o, 99, o), Ipv4Addr::new(255, 100, o, 1)] {
                assert_eq!(t.get(&IpAddr::V4(ip)), ip.to_string());
            }
        }
        // The remembered address is the one asked for, not just any earlier one.
        assert_eq!(t.get(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), "10.0.0.1");
        assert_eq!(t.get(&IpAddr::V6(Ipv6Addr::LOCALHOST)), "::1");
        assert_eq!(t.get(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))), "10.0.0.1");
        for ip in [Ipv6Addr::LOCALHOST, "fd00:10:244::2".parse().unwrap(), "::ffff:10.244.1.2".parse().unwrap()] {
            assert_eq!(t.get(&IpAddr::V6(ip)), ip.to_string());
        }
    }
}
