//! Timestamps: kernel boot-time nanoseconds to wall-clock RFC 3339.

use nix::time::{ClockId, clock_gettime};

/// The offset from CLOCK_BOOTTIME to CLOCK_REALTIME, read once at start, so
/// that eBPF timestamps (`bpf_ktime_get_boot_ns`) become wall-clock times.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    offset_ns: i128,
}

impl BootClock {
    pub fn new() -> Self {
        let realtime = now_ns(ClockId::CLOCK_REALTIME);
        let boottime = now_ns(ClockId::CLOCK_BOOTTIME);
        Self {
            offset_ns: realtime - boottime,
        }
    }

    /// Converts nanoseconds since boot to RFC 3339.
    pub fn format_boot_ns(&self, boot_ns: u64) -> String {
        rfc3339(self.offset_ns + i128::from(boot_ns))
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

/// The current wall-clock time as RFC 3339.
pub fn now() -> String {
    rfc3339(now_ns(ClockId::CLOCK_REALTIME))
}

fn now_ns(clock: ClockId) -> i128 {
    let time = clock_gettime(clock).expect("CLOCK_REALTIME and CLOCK_BOOTTIME exist on Linux 2.6.39+");
    i128::from(time.tv_sec()) * 1_000_000_000 + i128::from(time.tv_nsec())
}

/// Formats nanoseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`
/// (microseconds, UTC).
pub fn rfc3339(unix_ns: i128) -> String {
    let seconds = unix_ns.div_euclid(1_000_000_000);
    let micros = unix_ns.rem_euclid(1_000_000_000) / 1000;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29T12:34:56.789012Z, a leap day.
        assert_eq!(rfc3339(951_827_696_789_012_000), "2000-02-29T12:34:56.789012Z");
        // 2026-12-04T19:43:41Z.
        assert_eq!(rfc3339(1_796_413_421_000_000_000), "2026-12-04T19:43:41.000000Z");
    }
}
