//! The significance settings of a diff's tests (α, sampled sign patterns, seed), from the runs'
//! own resolved configs: run B's `significance:` section (the run being judged), else run A's,
//! else the defaults a config gets. A diff therefore tests at the level its runs chose, and says
//! where the level came from.
use serde::Serialize;

use crate::runfiles::layout::RunFiles;
use crate::runfiles::source::Source;
use crate::stats::Settings;

/// What a config without a `significance:` section gets.
pub const DEFAULT: Settings = Settings { alpha: 0.05, bootstrap_resamples: 10_000, seed: 0 };

/// The settings a diff used and where they came from.
#[derive(Debug, Clone, Serialize)]
pub struct DiffSettings {
    pub alpha: f64,
    pub bootstrap_resamples: u32,
    pub seed: u64,
    /// `b`, `a` (that side's resolved config) or `default` (neither has a readable one).
    pub from: &'static str,
}

impl DiffSettings {
    pub fn settings(&self) -> Settings {
        Settings {
            alpha: self.alpha,
            bootstrap_resamples: self.bootstrap_resamples,
            seed: self.seed,
        }
    }
}

/// The settings of run B's config, else run A's, else [`DEFAULT`]. A config that cannot be
/// read or parsed is passed over here (the config section of the diff reports it).
pub fn read(a: &dyn Source, ra: &RunFiles, b: &dyn Source, rb: &RunFiles) -> DiffSettings {
    for (side, src, files) in [("b", b, rb), ("a", a, ra)] {
        let Some((_, entry)) = &files.config else { continue };
        let Ok(bytes) = src.read(entry) else { continue };
        if let Some(s) = from_yaml(&bytes) {
            return DiffSettings {
                alpha: s.alpha,
                bootstrap_resamples: s.bootstrap_resamples,
                seed: s.seed,
                from: side,
            };
        }
    }
    let d = DEFAULT;
    DiffSettings {
        alpha: d.alpha,
        bootstrap_resamples: d.bootstrap_resamples,
        seed: d.seed,
        from: "default",
    }
}

/// The `significance:` section of a config's bytes, keys it leaves out at their defaults;
/// `None` when the bytes are no YAML mapping or a key holds something no run accepts.
fn from_yaml(bytes: &[u8]) -> Option<Settings> {
    let v: serde_yaml::Value = serde_yaml::from_slice(bytes).ok()?;
    let sig = v.as_mapping()?.get("significance");
    let key = |k: &str| sig.and_then(|s| s.get(k)).filter(|v| !v.is_null());
    let mut s = DEFAULT;
    if let Some(a) = key("alpha") {
        s.alpha = a.as_f64().filter(|a| *a > 0.0 && *a < 1.0)?;
    }
    if let Some(r) = key("bootstrap_resamples") {
        s.bootstrap_resamples = u32::try_from(r.as_u64()?).ok()?;
    }
    if let Some(seed) = key("seed") {
        s.seed = seed.as_u64()?;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configs_significance_section_sets_alpha_resamples_and_seed() {
        let s =
            from_yaml(b"significance: {alpha: 0.01, bootstrap_resamples: 999, seed: 7}\n").unwrap();
        assert_eq!((s.alpha, s.bootstrap_resamples, s.seed), (0.01, 999, 7));
        let partial = from_yaml(b"models: []\nsignificance: {alpha: 0.1}\n").unwrap();
        assert_eq!((partial.alpha, partial.bootstrap_resamples), (0.1, 10_000));
        assert_eq!(from_yaml(b"datasets: []\n").unwrap().alpha, 0.05);
        assert!(from_yaml(b"significance: {alpha: 2}\n").is_none());
        assert!(from_yaml(b"[not, a, mapping]").is_none());
    }
}
