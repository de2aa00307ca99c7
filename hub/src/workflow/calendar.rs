//! The working-day calendar (工作日) for review deadlines: weekends are rest days, the listed
//! public holidays too, and the listed make-up working days (调休上班) are working days even on a
//! weekend. Deadlines are dates in China Standard Time.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};
use serde::Deserialize;

/// China Standard Time, UTC+8: the business day of every province.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// The business date of an instant.
pub fn business_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&cst()).date_naive()
}

/// The instant a business date begins (00:00 CST).
pub fn start_of(date: NaiveDate) -> DateTime<Utc> {
    cst()
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("fixed offset")
        .with_timezone(&Utc)
}

/// Holidays and make-up working days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    #[serde(default)]
    holidays: Vec<NaiveDate>,
    #[serde(default)]
    workdays: Vec<NaiveDate>,
}

impl Calendar {
    /// # Errors
    /// A date listed both as a holiday and as a make-up working day.
    pub fn new(
        holidays: impl IntoIterator<Item = NaiveDate>,
        workdays: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<Self> {
        let holidays: BTreeSet<_> = holidays.into_iter().collect();
        let workdays: BTreeSet<_> = workdays.into_iter().collect();
        if let Some(d) = holidays.intersection(&workdays).next() {
            bail!("{d} is listed both as a holiday and as a working day");
        }
        Ok(Calendar { holidays, workdays })
    }

    /// Reads `holidays = [...]` and `workdays = [...]` (ISO dates) from TOML.
    ///
    /// # Errors
    /// Malformed TOML or contradicting dates.
    pub fn from_toml(text: &str) -> Result<Self> {
        let f: CalendarFile = toml::from_str(text)?;
        Self::new(f.holidays, f.workdays)
    }

    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// The `n`th working day after `start` (the start day itself is not counted: a step
    /// started on Monday with 10 working days ends on the second Monday after, holidays aside).
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        let mut d = start;
        let mut left = n;
        while left > 0 {
            d += Duration::days(1);
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// The `n`th working day before `date` (for "n working days before the deadline").
    pub fn sub_working_days(&self, date: NaiveDate, n: u32) -> NaiveDate {
        let mut d = date;
        let mut left = n;
        while left > 0 {
            d -= Duration::days(1);
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn weekends_holidays_and_make_up_days() {
        // National Day 2026: 1–7 October off; a Saturday worked instead.
        let cal = Calendar::new((1..=7).map(|n| d(&format!("2026-10-0{n}"))), [d("2026-10-10")]).unwrap();
        assert!(!cal.is_working_day(d("2026-10-01")));
        assert!(cal.is_working_day(d("2026-10-10")), "make-up Saturday");
        assert!(!cal.is_working_day(d("2026-10-11")), "Sunday");
        // Started Wednesday 30 September: working days are 8, 9, 10 (Sat), 12–16, 19, 20 October.
        assert_eq!(cal.add_working_days(d("2026-09-30"), 3), d("2026-10-10"));
        assert_eq!(cal.add_working_days(d("2026-09-30"), 10), d("2026-10-20"));
        assert_eq!(Calendar::default().add_working_days(d("2026-11-23"), 10), d("2026-12-07"));
        assert_eq!(Calendar::default().sub_working_days(d("2026-12-07"), 2), d("2026-12-03"));
        assert!(Calendar::new([d("2026-10-10")], [d("2026-10-10")]).is_err());
    }

    #[test]
    fn business_dates_are_china_standard_time() {
        let at = "2026-11-23T17:30:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(business_date(at), d("2026-11-24"));
        assert_eq!(start_of(d("2026-11-24")), "2026-11-23T16:00:00Z".parse::<DateTime<Utc>>().unwrap());
    }

    fn calendar() -> impl Strategy<Value = Calendar> {
        let day = (0i64..800).prop_map(|n| d("2026-01-01") + Duration::days(n));
        (prop::collection::vec(day.clone(), 0..40), prop::collection::vec(day, 0..10)).prop_map(|(h, w)| {
            let w: Vec<_> = w.into_iter().filter(|x| !h.contains(x)).collect();
            Calendar::new(h, w).unwrap()
        })
    }

    proptest! {
        #[test]
        fn the_deadline_is_a_working_day_exactly_n_working_days_later(
            cal in calendar(), offset in 0i64..700, n in 1u32..25,
        ) {
            let start = d("2026-01-01") + Duration::days(offset);
            let end = cal.add_working_days(start, n);
            prop_assert!(end > start);
            prop_assert!(cal.is_working_day(end));
            let counted = (1..=(end - start).num_days()).filter(|k| cal.is_working_day(start + Duration::days(*k))).count();
            prop_assert_eq!(counted, n as usize);
            prop_assert!(cal.add_working_days(start, n + 1) > end, "monotonic");
            prop_assert_eq!(cal.sub_working_days(end, n) <= start, true);
        }
    }
}
