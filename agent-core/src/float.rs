//! Exact decimal ⇄ `f64` conversion in little code and little stack: the
//! two conversions qemu-ga makes, `strtod` on a JSON number's text and
//! `printf("%.17g")` on output, both correctly rounded (ties to even).
//!
//! Both work on a small fixed-size big integer with schoolbook arithmetic
//! instead of the table-driven algorithms of `core` (Eisel–Lemire, Grisu,
//! Dragon4), which cost about 26 KiB of code and tables and 2–4 KiB of
//! stack. Numbers in ids are rare and short, so speed matters less here
//! than size; a conversion takes a few microseconds at worst.

// The arithmetic below is on limbs (u32 products in u64), on exponents
// bounded by the f64 range and the saturated input exponent (|exp10| <
// 2^41), and on digit counts bounded by the input length; none can
// overflow, and the unit tests run every path in debug builds.
#![allow(clippy::arithmetic_side_effects)]

/// 32-bit limbs for [`parse`]: its largest intermediate value is
/// 10^1104 × 2^58 (3 726 bits).
const PARSE_LIMBS: usize = 118;

/// 32-bit limbs for [`significant_digits`]: its largest intermediate value
/// is 2^53 × 10^324 × 10 (1 134 bits).
const FORMAT_LIMBS: usize = 36;

/// Significant decimal digits [`parse`] keeps; later nonzero digits only
/// set a sticky bit. A tie between two doubles has at most 767
/// significant digits, so 780 decide every rounding.
const KEPT_DIGITS: usize = 780;

/// An unsigned integer of up to `N` 32-bit limbs, least significant
/// first. Bits beyond `N` limbs would be dropped; the callers' bounds keep
/// every value within them.
#[derive(Clone)]
struct Big<const N: usize> {
    limbs: [u32; N],
    len: usize,
}

impl<const N: usize> Big<N> {
    const ZERO: Self = Big {
        limbs: [0; N],
        len: 0,
    };

    // Each operation is one function on the limbs as a slice, whatever
    // `N`: two sizes of `Big` would otherwise carry two copies of the
    // arithmetic on a bare-metal image.

    /// The number as a slice view.
    fn nat(&mut self) -> Nat<'_> {
        Nat {
            limbs: &mut self.limbs,
            len: &mut self.len,
        }
    }

    /// `self = v`.
    fn set(&mut self, v: u64) {
        self.nat().set(v)
    }

    fn is_zero(&self) -> bool {
        self.len == 0
    }

    /// Number of significant bits.
    fn bit_len(&self) -> u32 {
        match self.len.checked_sub(1).and_then(|i| self.limbs.get(i)) {
            Some(top) => (self.len as u32 - 1) * 32 + (32 - top.leading_zeros()),
            None => 0,
        }
    }

    /// `self = self * m + a`.
    fn mul_add_small(&mut self, m: u32, a: u32) {
        self.nat().mul_add_small(m, a)
    }

    /// `self *= 10^n`.
    fn mul_pow10(&mut self, n: u32) {
        self.nat().mul_pow10(n)
    }

    /// `self <<= bits`.
    fn shl(&mut self, bits: u32) {
        self.nat().shl(bits)
    }

    /// `self >>= 1`.
    fn shr1(&mut self) {
        self.nat().shr1()
    }

    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        compare(&self.limbs, self.len, &other.limbs, other.len)
    }

    /// `self -= other`, for `self >= other`.
    fn sub(&mut self, other: &Self) {
        self.nat().sub(&other.limbs)
    }
}

/// A [`Big`] of any size, as its limbs and their count.
struct Nat<'a> {
    limbs: &'a mut [u32],
    len: &'a mut usize,
}

impl Nat<'_> {
    fn set(&mut self, v: u64) {
        self.limbs.fill(0);
        for (i, limb) in self.limbs.iter_mut().take(2).enumerate() {
            *limb = (v >> (32 * i)) as u32;
        }
        *self.len = 2;
        self.trim();
    }

    fn trim(&mut self) {
        while *self.len > 0 && self.limbs.get(self.len.wrapping_sub(1)) == Some(&0) {
            *self.len = self.len.wrapping_sub(1);
        }
    }

    fn mul_add_small(&mut self, m: u32, a: u32) {
        let mut carry = u64::from(a);
        for limb in self.limbs.iter_mut().take(*self.len) {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            if let Some(limb) = self.limbs.get_mut(*self.len) {
                *limb = carry as u32;
                *self.len += 1;
            }
        }
    }

    fn mul_pow10(&mut self, mut n: u32) {
        while n >= 9 {
            self.mul_add_small(1_000_000_000, 0);
            n -= 9;
        }
        if n > 0 {
            self.mul_add_small(10u32.pow(n), 0);
        }
    }

    fn shl(&mut self, bits: u32) {
        let words = (bits / 32) as usize;
        let bits = bits % 32;
        let new_len = (*self.len + words + 1).min(self.limbs.len());
        for i in (0..new_len).rev() {
            let hi = i
                .checked_sub(words)
                .and_then(|j| self.limbs.get(j))
                .copied();
            let lo = i
                .checked_sub(words + 1)
                .and_then(|j| self.limbs.get(j))
                .copied();
            let hi = hi.unwrap_or(0);
            let lo = lo.unwrap_or(0);
            let v = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (32 - bits))
            };
            if let Some(limb) = self.limbs.get_mut(i) {
                *limb = v;
            }
        }
        *self.len = new_len;
        self.trim();
    }

    fn shr1(&mut self) {
        let mut carry = 0u32;
        for limb in self.limbs.iter_mut().take(*self.len).rev() {
            let v = *limb;
            *limb = (v >> 1) | (carry << 31);
            carry = v & 1;
        }
        self.trim();
    }

    fn sub(&mut self, other: &[u32]) {
        let mut borrow = 0u64;
        for (i, limb) in self.limbs.iter_mut().take(*self.len).enumerate() {
            let o = u64::from(other.get(i).copied().unwrap_or(0)) + borrow;
            let v = u64::from(*limb);
            borrow = u64::from(v < o);
            *limb = (v.wrapping_sub(o)) as u32;
        }
        self.trim();
    }
}

/// The order of two numbers given as limbs and counts.
fn compare(a: &[u32], a_len: usize, b: &[u32], b_len: usize) -> core::cmp::Ordering {
    a_len.cmp(&b_len).then_with(|| {
        let a = a.iter().take(a_len).rev();
        let b = b.iter().take(b_len).rev();
        a.cmp(b)
    })
}

/// The 17 significant decimal digits of `|v|` (finite, nonzero) correctly
/// rounded, ties to even, as `printf("%.17e")` gives them, and the decimal
/// exponent of the first: `|v| ≈ d.dddddddddddddddd × 10^exponent`.
/// Zero, infinities and NaN give `0` digits and exponent 0.
// Not inlined (nor `parse`): a float in a nested id then costs the stack
// of one of them at a time, not of both on top of the writer's frames.
#[inline(never)]
pub fn significant_digits(v: f64) -> ([u8; 17], i32) {
    let mut digits = [b'0'; 17];
    if !v.is_finite() || v == 0.0 {
        return (digits, 0);
    }
    let bits = v.to_bits();
    let raw_exp = ((bits >> 52) & 0x7FF) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, exp2) = if raw_exp == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), raw_exp - 1075)
    };
    // r / s = |v| / 10^k, brought into [1, 10).
    let mut r = Big::<FORMAT_LIMBS>::ZERO;
    r.set(mantissa);
    let mut s = Big::<FORMAT_LIMBS>::ZERO;
    s.set(1);
    if exp2 >= 0 {
        r.shl(exp2 as u32);
    } else {
        s.shl(exp2.unsigned_abs());
    }
    // log10(2) ≈ 0.30103: an estimate of k, off by at most one.
    let bit_len = 64 - mantissa.leading_zeros() as i32;
    let mut k = ((exp2 + bit_len - 1) * 30103).div_euclid(100_000);
    if k >= 0 {
        s.mul_pow10(k as u32);
    } else {
        r.mul_pow10(k.unsigned_abs());
    }
    // The estimate is at most one too low (or high, below).
    {
        let mut ten_s = s.clone();
        ten_s.mul_add_small(10, 0);
        if r.cmp(&ten_s).is_ge() {
            s = ten_s;
            k += 1;
        }
    }
    while r.cmp(&s).is_lt() {
        r.mul_add_small(10, 0);
        k -= 1;
    }
    for digit in digits.iter_mut() {
        let mut d = b'0';
        while r.cmp(&s).is_ge() {
            r.sub(&s);
            d += 1;
        }
        *digit = d;
        r.mul_add_small(10, 0);
    }
    // r is now 10 × the remainder: compare it with 10 × s / 2.
    s.mul_add_small(5, 0);
    let last_odd = digits.last().is_some_and(|d| d % 2 == 1);
    let round_up = match r.cmp(&s) {
        core::cmp::Ordering::Greater => true,
        core::cmp::Ordering::Equal => last_odd,
        core::cmp::Ordering::Less => false,
    };
    if round_up {
        let mut carry = true;
        for digit in digits.iter_mut().rev() {
            if !carry {
                break;
            }
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                carry = false;
            }
        }
        if carry {
            // 9.99…9 rounded up to 10.00…0.
            if let Some(first) = digits.first_mut() {
                *first = b'1';
            }
            k += 1;
        }
    }
    (digits, k)
}

/// Convert the text of a JSON number (QEMU's grammar:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, checked by the lexer)
/// to the nearest `f64`, ties to even, as glibc's `strtod` does; values
/// beyond the range give ±infinity, values below half the smallest
/// subnormal ±0. `None` if `text` is not such a number.
#[inline(never)]
pub fn parse(text: &[u8]) -> Option<f64> {
    let (negative, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match body.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => (body.get(..at)?, Some(body.get(at + 1..)?)),
        None => (body, None),
    };
    // The decimal exponent, saturated far beyond any finite result.
    let mut exp10: i64 = 0;
    if let Some(exponent) = exponent {
        let (sign, digits) = match exponent.split_first() {
            Some((b'-', rest)) => (-1, rest),
            Some((b'+', rest)) => (1, rest),
            _ => (1, exponent),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for &d in digits {
            exp10 = (exp10 * 10 + i64::from(d - b'0')).min(1 << 40);
        }
        exp10 *= sign;
    }
    // Significant digits into a big integer, at most KEPT_DIGITS of them.
    // Both integers live here, so that they are built in place.
    let mut num = Big::<PARSE_LIMBS>::ZERO;
    num.set(0);
    let mut den = Big::<PARSE_LIMBS>::ZERO;
    den.set(1);
    let mut kept = 0usize;
    let mut sticky = false;
    let mut seen_point = false;
    let mut any_digit = false;
    for &b in mantissa {
        match b {
            b'.' if !seen_point => seen_point = true,
            b'0'..=b'9' => {
                any_digit = true;
                let d = u32::from(b - b'0');
                if kept == 0 && d == 0 {
                    if seen_point {
                        exp10 -= 1;
                    }
                } else if kept < KEPT_DIGITS {
                    num.mul_add_small(10, d);
                    kept += 1;
                    if seen_point {
                        exp10 -= 1;
                    }
                } else {
                    sticky |= d != 0;
                    if !seen_point {
                        exp10 += 1;
                    }
                }
            }
            _ => return None,
        }
    }
    if !any_digit {
        return None;
    }
    let magnitude = exp10 + kept as i64; // |value| < 10^magnitude
    let value = if num.is_zero() || magnitude < -324 {
        0.0
    } else if magnitude > 310 {
        f64::INFINITY
    } else {
        // value = num × 10^exp10 = num / den.
        if exp10 >= 0 {
            num.mul_pow10(exp10 as u32);
        } else {
            den.mul_pow10(exp10.unsigned_abs() as u32);
        }
        round_quotient(&mut num, &mut den, sticky)
    };
    Some(if negative { -value } else { value })
}

/// The `f64` nearest to `num / den` (+ a little, if `sticky`).
fn round_quotient<const N: usize>(num: &mut Big<N>, den: &mut Big<N>, sticky: bool) -> f64 {
    // Scale so that the quotient has 56 or 57 bits: num / den = q × 2^scale.
    let shift = num.bit_len() as i32 - den.bit_len() as i32 - 56;
    if shift >= 0 {
        den.shl(shift as u32);
    } else {
        num.shl(shift.unsigned_abs());
    }
    let scale = shift;
    // Binary long division: 58 quotient bits at most.
    let mut q: u64 = 0;
    den.shl(57);
    for bit in (0..=57).rev() {
        if num.cmp(den).is_ge() {
            num.sub(den);
            q |= 1 << bit;
        }
        den.shr1();
    }
    let sticky = sticky || !num.is_zero();
    // value = (q + fraction) × 2^scale; the leading bit's weight:
    let q_bits = 64 - q.leading_zeros() as i32;
    let top = q_bits - 1 + scale;
    // Keep 53 bits, or fewer below the normal range (lsb weight 2^-1074).
    // q has 56 or 57 bits, so at least 3 are dropped in the normal range,
    // and at least 2 below it.
    let drop = if top >= -1022 {
        q_bits - 53
    } else {
        -1074 - scale
    };
    if drop > 58 {
        return 0.0; // below half the smallest subnormal
    }
    let d = drop.max(1) as u32;
    let mut m = q >> d;
    let round_bit = (q >> (d - 1)) & 1 == 1;
    let rest = q & ((1u64 << (d - 1)) - 1) != 0;
    if round_bit && (rest || sticky || m & 1 == 1) {
        m += 1;
    }
    // The weight of m's lsb.
    let mut lsb = scale + d as i32;
    if m == 1 << 53 {
        m >>= 1;
        lsb += 1;
    }
    if m == 0 {
        return 0.0;
    }
    if m < 1 << 52 {
        // Subnormal: lsb is 2^-1074.
        return f64::from_bits(m);
    }
    let biased = lsb + 52 + 1023;
    if biased >= 0x7FF {
        return f64::INFINITY;
    }
    f64::from_bits(((biased as u64) << 52) | (m & ((1 << 52) - 1)))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::excessive_precision
    )]
    use super::*;

    /// The module's example.
    #[test]
    fn doc_example() {
        use crate::float::{parse, significant_digits};

        assert_eq!(parse(b"0.1"), Some(0.1));
        assert_eq!(parse(b"-2.5e-3"), Some(-0.0025));
        assert_eq!(parse(b"1e400"), Some(f64::INFINITY));
        let (digits, exponent) = significant_digits(0.1);
        assert_eq!((&digits, exponent), (b"10000000000000001", -1));
    }
    extern crate std;
    use std::format;
    use std::string::String;

    /// xorshift64*
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// core's exact `{:.16e}`, as digits and exponent.
    fn reference_digits(v: f64) -> ([u8; 17], i32) {
        let text = format!("{:.16e}", v.abs());
        let (mantissa, exp) = text.split_once('e').unwrap();
        let mut digits = [b'0'; 17];
        for (slot, d) in digits
            .iter_mut()
            .zip(mantissa.bytes().filter(u8::is_ascii_digit))
        {
            *slot = d;
        }
        (digits, exp.parse().unwrap())
    }

    fn interesting(rng: &mut Rng) -> f64 {
        let bits = rng.next();
        match bits % 4 {
            // Any bit pattern.
            0 => f64::from_bits(bits),
            // Subnormals.
            1 => f64::from_bits(bits >> 12),
            // Integers and short fractions.
            2 => (bits % 1_000_000_007) as f64 / [1.0, 4.0, 8.0, 1024.0][(bits >> 60) as usize % 4],
            // Near powers of two and ten.
            _ => f64::from_bits((((bits >> 52) % 2046 + 1) << 52) | (bits & 0xF)),
        }
    }

    #[test]
    fn digits_match_core_exactly() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let edges = [
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324,
            0.1,
            1.0,
            9.999_999_999_999_999e22,
            2251799813685247.25,
            2251799813685246.75,
            0.3,
            123456789012345680.0,
        ];
        for v in edges
            .into_iter()
            .chain((0..100_000).map(|_| interesting(&mut rng)))
        {
            if !v.is_finite() || v == 0.0 {
                continue;
            }
            assert_eq!(significant_digits(v), reference_digits(v), "{v:e}");
        }
    }

    /// A random decimal text in the JSON grammar.
    fn decimal(rng: &mut Rng) -> String {
        let mut s = String::new();
        if rng.next().is_multiple_of(2) {
            s.push('-');
        }
        let digits = match rng.next() % 4 {
            0 => 1 + rng.next() % 3,
            1 => 15 + rng.next() % 5,
            2 => 1 + rng.next() % 40,
            _ => 1 + rng.next() % 900,
        };
        for i in 0..digits {
            let d = (rng.next() % 10) as u8;
            s.push(char::from(if i == 0 && digits > 1 {
                b'1' + d % 9
            } else {
                b'0' + d
            }));
        }
        if rng.next().is_multiple_of(2) {
            s.push('.');
            for _ in 0..1 + rng.next() % 20 {
                s.push(char::from(b'0' + (rng.next() % 10) as u8));
            }
        }
        if rng.next().is_multiple_of(2) {
            s.push(['e', 'E'][(rng.next() % 2) as usize]);
            match rng.next() % 3 {
                0 => s.push('-'),
                1 => s.push('+'),
                _ => {}
            }
            s.push_str(&format!("{}", rng.next() % 400));
        }
        s
    }

    #[test]
    fn parse_matches_core_exactly() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let edges = [
            "0",
            "-0",
            "0.0",
            "1",
            "0.1",
            "1e400",
            "-1e400",
            "1e-400",
            "4.9406564584124654e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "2.2250738585072011e-308",
            "2.2250738585072012e-308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623159e308",
            "9007199254740993",
            "9007199254740992.5",
            "123456789012345678901234567890",
            "0.000000000000000000000000000001e30",
            "1e1000000000000",
            "1e-1000000000000",
            "18446744073709551616",
        ];
        let randoms = (0..50_000).map(|_| decimal(&mut rng));
        for text in edges.iter().map(|s| String::from(*s)).chain(randoms) {
            let expected: f64 = text.parse().unwrap();
            let got = parse(text.as_bytes()).unwrap();
            assert_eq!(got.to_bits(), expected.to_bits(), "{text}");
        }
        // Round trips of formatted doubles, and halfway cases.
        for _ in 0..25_000 {
            let v = interesting(&mut rng);
            if !v.is_finite() {
                continue;
            }
            for text in [format!("{v:e}"), format!("{v:.17e}"), format!("{v:.25e}")] {
                let expected: f64 = text.parse().unwrap();
                assert_eq!(
                    parse(text.as_bytes()).unwrap().to_bits(),
                    expected.to_bits(),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn long_inputs_and_rejects() {
        let mut long = String::from("0.");
        long.push_str(&"0".repeat(5000));
        long.push('1');
        assert_eq!(parse(long.as_bytes()), Some(0.0));
        let digits = "7".repeat(100_000);
        assert_eq!(parse(digits.as_bytes()), Some(f64::INFINITY));
        let tie = format!("9007199254740993{}", "0".repeat(2000));
        assert_eq!(
            parse(format!("{tie}e-2000").as_bytes()),
            Some(9007199254740992.0)
        );
        assert_eq!(
            parse(format!("{tie}1e-2001").as_bytes()),
            Some(9007199254740994.0)
        );
        for bad in ["", "-", ".", "e5", "1e", "1e+", "1x", "--1", "1..2"] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
