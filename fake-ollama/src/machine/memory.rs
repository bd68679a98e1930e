//! Memory and speed: which models are resident, LRU eviction, and the formulas for resident
//! size, capacity and rates (see the parent module's docs).

use super::*;

impl SimNode {
    /// Makes room for and starts loading `model`, or refuses without evicting anything.
    pub(super) fn load(&mut self, model: &ModelName, weights_gb: f64) -> Result<(), StartError> {
        let size_gb = self.resident_gb(weights_gb);
        let capacity = self.capacity_gb();
        let mut idle: Vec<usize> = (0..self.residents.len())
            .filter(|&i| self.residents[i].loading_until.is_none() && self.jobs_of(&self.residents[i].name) == 0)
            .collect();
        idle.sort_by_key(|&i| self.residents[i].last_used);
        let mut victims: Vec<usize> = Vec::new();
        let room = |victims: &[usize]| {
            let kept = (0..self.residents.len()).filter(|i| !victims.contains(i));
            let used: f64 = kept.clone().map(|i| self.residents[i].size_gb).sum();
            used + size_gb <= capacity + EPS_GB && kept.count() < self.max_loaded()
        };
        for &i in &idle {
            if room(&victims) {
                break;
            }
            victims.push(i);
        }
        if !room(&victims) {
            return Err(StartError::OutOfMemory);
        }
        victims.sort_unstable_by(|a, b| b.cmp(a));
        for i in victims {
            self.residents.remove(i);
            self.stats.evictions += 1;
        }
        self.stats.cold_loads += 1;
        let load_gbps = positive(self.spec.load_gbps, FALLBACK_LOAD_GBPS) / self.slow;
        self.residents.push(Resident {
            name: model.clone(),
            weights_gb,
            size_gb,
            loading_until: Some(after(self.now, weights_gb / load_gbps)),
            last_used: self.tick,
            prefixes: VecDeque::new(),
        });
        Ok(())
    }

    pub(super) fn touch(&mut self, model: &ModelName) {
        self.tick += 1;
        if let Some(r) = self.resident(model) {
            self.residents[r].last_used = self.tick;
        }
    }

    pub(super) fn resident(&self, model: &ModelName) -> Option<usize> {
        self.residents.iter().position(|r| &r.name == model)
    }

    /// Jobs attached to `model` (queued or running; failing ones are not).
    pub(super) fn jobs_of(&self, model: &ModelName) -> u32 {
        self.jobs.iter().filter(|a| &a.job.model == model && !matches!(a.phase, Phase::Failing { .. })).count() as u32
    }

    pub(super) fn disk_size(&self, model: &ModelName) -> Option<f64> {
        self.spec.disk.iter().find(|(m, _)| m == model).map(|&(_, gb)| if gb.is_finite() { gb.max(0.0) } else { 0.0 })
    }

    pub(super) fn used_gb(&self) -> f64 {
        self.residents.iter().map(|r| r.size_gb).sum()
    }

    pub(super) fn capacity_gb(&self) -> f64 {
        let gb = if self.spec.gpu_vram_gb.is_empty() {
            self.spec.ram_gb
        } else {
            self.spec.gpu_vram_gb.iter().map(|&g| positive(g, 0.0)).sum()
        };
        positive(gb, 0.0)
    }

    pub(super) fn resident_gb(&self, weights_gb: f64) -> f64 {
        let kv = weights_gb
            * KV_FRACTION_PER_4K
            * (f64::from(self.context_length()) / f64::from(DEFAULT_CONTEXT))
            * self.num_parallel() as f64;
        weights_gb + kv
    }

    pub(super) fn decode_tps(&self, weights_gb: f64) -> f64 {
        DECODE_EFFICIENCY * positive(self.spec.bandwidth_gbps, FALLBACK_BANDWIDTH_GBPS)
            / weights_gb.max(MIN_WEIGHTS_GB)
            / self.slow
    }

    pub(super) fn context_length(&self) -> u32 {
        if self.spec.context_length == 0 {
            DEFAULT_CONTEXT
        } else {
            self.spec.context_length
        }
    }

    pub(super) fn num_parallel(&self) -> usize {
        self.spec.num_parallel.max(1) as usize
    }

    pub(super) fn max_loaded(&self) -> usize {
        if self.spec.max_loaded_models == 0 {
            DEFAULT_MAX_LOADED as usize
        } else {
            self.spec.max_loaded_models as usize
        }
    }
}

/// `x` when it is a positive finite number, else `fallback`.
pub(super) fn positive(x: f64, fallback: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        fallback
    }
}

/// `secs` after `t`, rounded to the microsecond; NaN and negatives read as 0, overflow saturates.
pub(super) fn after(t: Instant, secs: f64) -> Instant {
    // `as` saturates: NaN → 0, negative → 0, too large → u64::MAX.
    let micros = (secs * 1e6).round() as u64;
    Instant::from_micros(t.as_micros().saturating_add(micros))
}
