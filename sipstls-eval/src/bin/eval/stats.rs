//! The repetitions of one figure: median and spread.

/// The values one figure took over its repetitions (never empty, all finite).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    values: Vec<f64>,
}

impl Sample {
    /// A sample of `values`; `None` when there are none or one is not finite.
    pub fn new(values: Vec<f64>) -> Option<Sample> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(Sample { values })
    }

    /// The values, in the order they were measured.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The median (the mean of the two middle values for an even count).
    pub fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        }
    }

    /// The smallest value.
    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The largest value.
    pub fn max(&self) -> f64 {
        self.values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// `(max - min) / median` in percent (0 when the median is 0).
    pub fn spread_percent(&self) -> f64 {
        let m = self.median();
        if m == 0.0 {
            0.0
        } else {
            (self.max() - self.min()) / m.abs() * 100.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Sample;

    #[test]
    fn median_min_max() {
        let s = Sample::new(vec![3.0, 1.0, 2.0]).expect("sample");
        assert_eq!((s.median(), s.min(), s.max()), (2.0, 1.0, 3.0));
        let s = Sample::new(vec![4.0, 1.0, 2.0, 3.0]).expect("sample");
        assert_eq!(s.median(), 2.5);
        assert!((s.spread_percent() - 120.0).abs() < 1e-9);
        assert!(Sample::new(vec![]).is_none());
        assert!(Sample::new(vec![f64::NAN]).is_none());
    }
}
