//! Randomised delays, so that objects or calls failing together do not retry in lockstep.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// `delay` made up to `fraction` longer or shorter at random.
pub fn jittered(delay: Duration, fraction: f64) -> Duration {
    let mut bytes = [0u8; 2];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return delay;
    }
    // A number in [-1, 1], from 16 random bits.
    let unit = f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX) * 2.0 - 1.0;
    delay.mul_f64(1.0 + fraction.clamp(0.0, 1.0) * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_varies_within_its_fraction() {
        let spread: std::collections::BTreeSet<u128> = (0..20)
            .map(|_| jittered(Duration::from_secs(100), 0.1).as_millis())
            .collect();
        assert!(spread.len() > 1, "jitter varies");
        assert!(
            spread.iter().all(|ms| (90_000..=110_000).contains(ms)),
            "{spread:?}"
        );
    }
}
