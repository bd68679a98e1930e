//! Memory bandwidth by chip name, for machines where it cannot be measured: Apple Silicon by exact
//! name, discrete GPUs and APUs by substring. The router scores decode speed by it; 0 means
//! unknown and makes the router fall back to memory tiers.

/// Apple Silicon, matched exactly against the normalised chip string (macOS's
/// `machdep.cpu.brand_string`, e.g. "Apple M3 Ultra"). M1–M4 figures are ollama-herd's table
/// (Apple's rated figures for the top bin). M4 Ultra has not shipped: twice the M4 Max, as every
/// Ultra so far has been two Max dies. M5 is Apple's rated 153 GB/s; M5 Pro/Max/Ultra scale the
/// same LPDDR5X-9600 to 256/512/1024-bit buses.
const APPLE_GBPS: &[(&str, f64)] = &[
    ("apple m1", 68.0),
    ("apple m1 pro", 200.0),
    ("apple m1 max", 400.0),
    ("apple m1 ultra", 800.0),
    ("apple m2", 100.0),
    ("apple m2 pro", 200.0),
    ("apple m2 max", 400.0),
    ("apple m2 ultra", 800.0),
    ("apple m3", 100.0),
    ("apple m3 pro", 150.0),
    ("apple m3 max", 400.0),
    ("apple m3 ultra", 819.0),
    ("apple m4", 120.0),
    ("apple m4 pro", 273.0),
    ("apple m4 max", 546.0),
    ("apple m4 ultra", 1092.0),
    ("apple m5", 153.0),
    ("apple m5 pro", 307.0),
    ("apple m5 max", 614.0),
    ("apple m5 ultra", 1228.0),
];

/// GPUs and APUs, matched as whole words of the normalised name ("a10" is not in "a100", nor
/// "h200" in "gh200"); the longest matching pattern wins, so "rtx 4080 super" beats "rtx 4080"
/// and "h100 nvl" beats "h100" whatever the order here. Names follow NVML's spelling ("NVIDIA A100-SXM4-80GB",
/// "NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"). Figures are rated GB/s.
const GPU_GBPS: &[(&str, f64)] = &[
    // NVIDIA data centre.
    ("gb300", 8000.0),
    ("b300", 8000.0),
    ("gb200", 8000.0),
    ("b200", 8000.0),
    ("gb10", 273.0),
    ("gh200", 4000.0),
    ("h200", 4800.0),
    ("h100 nvl", 3938.0),
    ("h100 pcie", 2000.0),
    ("h100", 3350.0),
    ("h800 pcie", 2000.0),
    ("h800", 3350.0),
    ("a100-sxm4-40gb", 1555.0),
    ("a100-pcie-40gb", 1555.0),
    ("a100 80gb pcie", 1935.0),
    ("a100", 2039.0),
    ("a800", 2039.0),
    ("nvidia a40", 696.0),
    ("nvidia a30", 933.0),
    ("nvidia a10g", 600.0),
    ("nvidia a10", 600.0),
    ("l40s", 864.0),
    ("l40", 864.0),
    ("nvidia l20", 864.0),
    ("nvidia l4", 300.0),
    ("v100", 900.0),
    ("p100", 732.0),
    ("tesla p40", 346.0),
    ("tesla t4", 320.0),
    // NVIDIA workstation.
    ("rtx pro 6000", 1792.0),
    ("rtx 6000 ada", 960.0),
    ("rtx 5000 ada", 576.0),
    ("rtx 4000 ada", 360.0),
    ("rtx a6000", 768.0),
    ("rtx a5000", 768.0),
    ("rtx a4500", 640.0),
    ("rtx a4000", 448.0),
    ("rtx a2000", 288.0),
    ("quadro rtx 8000", 672.0),
    ("quadro rtx 6000", 672.0),
    // NVIDIA GeForce 50.
    ("rtx 5090 laptop", 896.0),
    ("rtx 5090", 1792.0),
    ("rtx 5080", 960.0),
    ("rtx 5070 ti", 896.0),
    ("rtx 5070", 672.0),
    ("rtx 5060 ti", 448.0),
    ("rtx 5060", 448.0),
    // NVIDIA GeForce 40.
    ("rtx 4090 laptop", 576.0),
    ("rtx 4090 d", 1008.0),
    ("rtx 4090", 1008.0),
    ("rtx 4080 laptop", 432.0),
    ("rtx 4080 super", 736.0),
    ("rtx 4080", 716.0),
    ("rtx 4070 ti super", 672.0),
    ("rtx 4070 ti", 504.0),
    ("rtx 4070 super", 504.0),
    ("rtx 4070", 504.0),
    ("rtx 4060 ti", 288.0),
    ("rtx 4060", 272.0),
    // NVIDIA GeForce 30 and older.
    ("rtx 3090 ti", 1008.0),
    ("rtx 3090", 936.0),
    ("rtx 3080 ti", 912.0),
    ("rtx 3080", 760.0),
    ("rtx 3070 ti", 608.0),
    ("rtx 3070", 448.0),
    ("rtx 3060 ti", 448.0),
    ("rtx 3060", 360.0),
    ("titan rtx", 672.0),
    ("rtx 2080 ti", 616.0),
    ("rtx 2080 super", 496.0),
    ("rtx 2080", 448.0),
    ("rtx 2070", 448.0),
    ("rtx 2060", 336.0),
    ("gtx 1080 ti", 484.0),
    ("gtx 1080", 320.0),
    // AMD Instinct, Radeon and APUs.
    ("mi355x", 8000.0),
    ("mi350x", 8000.0),
    ("mi325x", 6000.0),
    ("mi300x", 5300.0),
    ("mi300a", 5300.0),
    ("mi250x", 3277.0),
    ("mi250", 3277.0),
    ("mi210", 1638.0),
    ("mi100", 1229.0),
    ("radeon pro w7900", 864.0),
    ("radeon pro w7800", 576.0),
    ("rx 9070 xt", 640.0),
    ("rx 9070", 640.0),
    ("rx 7900 xtx", 960.0),
    ("rx 7900 xt", 800.0),
    ("rx 7900 gre", 576.0),
    ("rx 7800 xt", 624.0),
    ("rx 7700 xt", 432.0),
    ("rx 6900 xt", 512.0),
    ("rx 6800 xt", 512.0),
    ("ryzen ai max", 256.0),
    // Intel Arc.
    ("arc a770", 560.0),
    ("arc b580", 456.0),
];

/// Rated memory bandwidth for a chip string, GB/s; 0 when unknown.
///
/// Apple chips match exactly (after lowercasing and collapsing whitespace, as ollama-herd does).
/// Otherwise the string is split at `" + "` (herd's chip string is `"<cpu> + <first GPU>"`) and
/// the parts are tried from the last, so a GPU name wins over a CPU that is also in the table;
/// within a part the longest matching pattern wins.
pub fn bandwidth_for_chip(chip: &str) -> f64 {
    let key = normalise(chip);
    if key.is_empty() {
        return 0.0;
    }
    if let Some(&(_, gbps)) = APPLE_GBPS.iter().find(|(name, _)| *name == key) {
        return gbps;
    }
    key.rsplit(" + ").find_map(longest_gpu_match).unwrap_or(0.0)
}

fn longest_gpu_match(part: &str) -> Option<f64> {
    GPU_GBPS.iter().filter(|(pat, _)| contains_word(part, pat)).max_by_key(|(pat, _)| pat.len()).map(|&(_, gbps)| gbps)
}

/// Whether `pat` occurs in `text` with no letter or digit right before or after it, so "a10" is
/// not found in "a100" nor "h200" in "gh200".
fn contains_word(text: &str, pat: &str) -> bool {
    let alnum_at = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    text.match_indices(pat)
        .any(|(at, _)| !alnum_at(text[..at].chars().next_back()) && !alnum_at(text[at + pat.len()..].chars().next()))
}

fn normalise(chip: &str) -> String {
    chip.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_names_from_the_reference_match_exactly() {
        for (chip, gbps) in [
            ("Apple M1", 68.0),
            ("Apple M1 Max", 400.0),
            ("Apple M2 Ultra", 800.0),
            ("Apple M3 Pro", 150.0),
            ("Apple M3 Ultra", 819.0),
            ("  apple   m3   ULTRA  ", 819.0),
            ("Apple M4", 120.0),
            ("Apple M4 Pro", 273.0),
            ("Apple M4 Max", 546.0),
            ("Apple M5", 153.0),
        ] {
            assert_eq!(bandwidth_for_chip(chip), gbps, "{chip}");
        }
        // Exact, not prefix: an unknown Apple variant is unknown rather than the base chip.
        assert_eq!(bandwidth_for_chip("Apple M9"), 0.0);
    }

    #[test]
    fn nvidia_names_as_nvml_spells_them() {
        assert_eq!(bandwidth_for_chip("NVIDIA GeForce RTX 4090"), 1008.0);
        assert_eq!(bandwidth_for_chip("NVIDIA H100 80GB HBM3"), 3350.0);
        assert_eq!(bandwidth_for_chip("NVIDIA H100 PCIe"), 2000.0);
        assert_eq!(bandwidth_for_chip("NVIDIA H100 NVL"), 3938.0);
        assert_eq!(bandwidth_for_chip("NVIDIA H200"), 4800.0);
        assert_eq!(bandwidth_for_chip("NVIDIA GH200 480GB"), 4000.0);
        assert_eq!(bandwidth_for_chip("NVIDIA A100-SXM4-40GB"), 1555.0);
        assert_eq!(bandwidth_for_chip("NVIDIA A100-SXM4-80GB"), 2039.0);
        assert_eq!(bandwidth_for_chip("NVIDIA A10"), 600.0);
        assert_eq!(bandwidth_for_chip("NVIDIA L4"), 300.0);
        assert_eq!(bandwidth_for_chip("NVIDIA L40S"), 864.0);
        assert_eq!(bandwidth_for_chip("NVIDIA GeForce RTX 4080 SUPER"), 736.0);
        assert_eq!(bandwidth_for_chip("NVIDIA GeForce RTX 4090 Laptop GPU"), 576.0);
        assert_eq!(bandwidth_for_chip("NVIDIA RTX 6000 Ada Generation"), 960.0);
        assert_eq!(bandwidth_for_chip("AMD Instinct MI300X"), 5300.0);
        assert_eq!(bandwidth_for_chip("AMD Radeon RX 7900 XTX"), 960.0);
        assert_eq!(bandwidth_for_chip("AMD Radeon RX 7900 XT"), 800.0);
    }

    #[test]
    fn the_gpu_part_of_a_linux_chip_string_wins() {
        assert_eq!(bandwidth_for_chip("AMD EPYC 7763 64-Core Processor + NVIDIA A100-SXM4-80GB"), 2039.0);
        assert_eq!(bandwidth_for_chip("AMD RYZEN AI MAX+ 395 w/ Radeon 8060S + NVIDIA GeForce RTX 5090"), 1792.0);
        assert_eq!(bandwidth_for_chip("AMD RYZEN AI MAX+ 395 w/ Radeon 8060S"), 256.0);
    }

    #[test]
    fn unknown_is_zero() {
        assert_eq!(bandwidth_for_chip(""), 0.0);
        assert_eq!(bandwidth_for_chip("Intel(R) Xeon(R) Platinum 8480+"), 0.0);
        assert_eq!(bandwidth_for_chip("Raspberry Pi 4 Model B Rev 1.4"), 0.0);
        assert_eq!(bandwidth_for_chip("Unknown Chip 9000"), 0.0);
    }

    /// Every pattern finds itself: no shorter pattern shadows a longer, more specific one.
    #[test]
    fn every_pattern_resolves_to_its_own_figure() {
        for &(pat, gbps) in GPU_GBPS {
            assert_eq!(bandwidth_for_chip(pat), gbps, "{pat}");
            assert_eq!(normalise(pat), pat, "patterns are stored normalised: {pat}");
        }
        for &(name, gbps) in APPLE_GBPS {
            assert_eq!(bandwidth_for_chip(name), gbps, "{name}");
        }
    }
}
