//! Resource quantities (`500m`, `2Gi`, `1e3`), exactly, for summing a
//! gang's `minResources`: parse, multiply, add, and print in the canonical
//! form the API server's own Go code prints (`2500m`, `1536Mi`, `2k`).

/// A quantity in nano-units, and how it was written (which decides how the
/// sum is printed, as the first quantity's format does in Go).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    nanos: i128,
    binary: bool,
}

const NANO: i128 = 1_000_000_000;

const BINARY: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];

/// Decimal suffixes by their power of ten, smallest first.
const DECIMAL: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

impl Quantity {
    /// Parse a Kubernetes quantity. Precision below a nano-unit is rounded
    /// up, as the API server rounds it.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(end);
        let (negative, digits) = match number.as_bytes().first()? {
            b'-' => (true, &number[1..]),
            b'+' => (false, &number[1..]),
            _ => (false, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // The number as an integer mantissa and a power of ten.
        let mut mantissa: i128 = 0;
        for b in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        let mut exp10 = -(fraction.len() as i32);
        let mut shift2 = 0u32;
        let mut binary = false;
        if let Some((_, bits)) = BINARY.iter().find(|(k, _)| *k == suffix) {
            shift2 = *bits;
            binary = true;
        } else if let Some((_, e)) = DECIMAL.iter().find(|(k, _)| *k == suffix) {
            exp10 += e;
        } else if let Some(e) = suffix
            .strip_prefix(['e', 'E'])
            .and_then(|e| e.parse::<i32>().ok())
        {
            exp10 += e;
        } else {
            return None;
        }
        let mut nanos = mantissa.checked_mul(1i128.checked_shl(shift2)?)?;
        let scale = exp10 + 9;
        if scale >= 0 {
            nanos = nanos.checked_mul(10i128.checked_pow(scale as u32)?)?;
        } else {
            let d = 10i128.checked_pow((-scale) as u32)?;
            nanos = (nanos + d - 1) / d;
        }
        Some(Quantity {
            nanos: if negative { -nanos } else { nanos },
            binary,
        })
    }

    pub fn zero_like(self) -> Quantity {
        Quantity { nanos: 0, ..self }
    }

    pub fn times(self, n: i64) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_mul(i128::from(n)),
            ..self
        }
    }

    /// The sum, in `self`'s format.
    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            ..self
        }
    }
}

impl std::fmt::Display for Quantity {
    /// Go's canonical form: a binary quantity of at least 1024 (in
    /// magnitude) that is a whole number of some `Ki`…`Ei` takes the
    /// largest such suffix; everything else takes the largest decimal
    /// suffix that leaves a whole number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.nanos;
        if self.binary && n % NANO == 0 && (n / NANO).abs() >= 1024 {
            let units = n / NANO;
            if let Some((suffix, bits)) = BINARY
                .iter()
                .rev()
                .find(|(_, bits)| units % (1i128 << bits) == 0)
            {
                return write!(f, "{}{suffix}", units >> bits);
            }
        }
        if n == 0 {
            return write!(f, "0");
        }
        let (suffix, e) = DECIMAL
            .iter()
            .rev()
            .find(|(_, e)| n % 10i128.pow((e + 9) as u32) == 0)
            .expect("every nano count is a whole number of nanos");
        write!(f, "{}{suffix}", n / 10i128.pow((e + 9) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::Quantity;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn sums_print_as_the_api_server_prints_them() {
        assert_eq!(q("500m").times(3).plus(q("1")).to_string(), "2500m");
        assert_eq!(q("1").times(2).plus(q("500m")).to_string(), "2500m");
        assert_eq!(q("2").plus(q("1000m")).to_string(), "3");
        assert_eq!(q("1Gi").times(2).to_string(), "2Gi");
        assert_eq!(q("1Gi").plus(q("512Mi")).to_string(), "1536Mi");
        assert_eq!(q("1000").to_string(), "1k");
        assert_eq!(q("1500").to_string(), "1500");
        assert_eq!(q("0.5").to_string(), "500m");
        assert_eq!(q("1e3").to_string(), "1k");
        assert_eq!(q("100Mi").times(0).to_string(), "0");
        assert_eq!(q("512").to_string(), "512");
        assert_eq!(q("1Ki").plus(q("1")).to_string(), "1025");
        assert_eq!(q("1.5Gi").to_string(), "1536Mi");
        assert_eq!(q("4").times(1).plus(q("2")).to_string(), "6");
        assert_eq!(q("1n").to_string(), "1n");
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in ["", "m", "1x", "1.2.3", "--1", "1Gb", "e3"] {
            assert_eq!(Quantity::parse(bad), None, "{bad:?}");
        }
    }

    proptest! {
        /// Printing and parsing again gives the same amount.
        #[test]
        fn printing_round_trips(units in 0i64..1_000_000_000, suffix in prop::sample::select(vec!["", "m", "k", "Mi", "Gi", "u"])) {
            let a = q(&format!("{units}{suffix}"));
            let b = q(&a.to_string());
            prop_assert_eq!(a.nanos, b.nanos);
        }
    }
}
