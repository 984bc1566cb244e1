//! Secret key rate of a simulated link: decoy-state BB84 in the asymptotic limit.
//!
//! Model (H.-K. Lo, X. Ma, K. Chen, "Decoy State Quantum Key Distribution", PRL 94, 230504
//! (2005); X. Ma, B. Qi, Y. Zhao, H.-K. Lo, PRA 72, 012326 (2005)), with the GLLP key rate
//! formula:
//!
//! ```text
//! η   = η_det · 10^(−α/10)                        channel and detector transmittance (α in dB)
//! Q_μ = Y₀ + 1 − e^(−ημ)                          gain of signal states
//! E_μ = (e₀Y₀ + e_d(1 − e^(−ημ))) / Q_μ            QBER of signal states (e₀ = 1/2)
//! Y₁  = Y₀ + η,  Q₁ = Y₁ μ e^(−μ)                 single-photon yield and gain
//! e₁  = (e₀Y₀ + e_d η) / Y₁                       single-photon error rate
//! R   = q [ Q₁ (1 − H₂(e₁)) − f Q_μ H₂(E_μ) ]     key bits per pulse (q = 1/2 for BB84 sifting)
//! SKR = max(R, 0) · pulse rate                    bits per second
//! ```
//!
//! where H₂ is the binary entropy and f the error-correction inefficiency. When the QBER
//! exceeds the abort threshold (11 % for BB84 by default) the protocol aborts and no key is
//! produced. The SNR reported in `phys_perf` is the ratio of signal clicks to dark counts,
//! 10·log₁₀((1 − e^(−ημ)) / Y₀) dB.

/// Device parameters of the model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bb84Device {
    /// Pulses per second.
    pub pulse_rate_hz: f64,
    /// Mean photon number μ of signal states.
    pub mean_photon_number: f64,
    /// Receiver transmittance η_det, detector efficiency included.
    pub detector_efficiency: f64,
    /// Dark count probability Y₀ per pulse.
    pub dark_count_probability: f64,
    /// Error-correction inefficiency f (≥ 1).
    pub error_correction_efficiency: f64,
    /// QBER above which the protocol aborts.
    pub abort_qber: f64,
}

/// The rate of a link at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkRate {
    /// Secret key rate, bits per second (0 when aborted).
    pub skr_bps: f64,
    /// Quantum bit error rate of signal states.
    pub qber: f64,
    /// Signal-to-noise ratio, dB.
    pub snr_db: f64,
    /// The QBER is above the abort threshold.
    pub aborted: bool,
}

/// Binary entropy H₂(x), in bits.
fn h2(x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    -x * x.log2() - (1.0 - x) * (1.0 - x).log2()
}

/// The key rate of `device` over a channel of `attenuation_db` with optical misalignment error
/// `misalignment` (e_d).
pub fn decoy_bb84(device: &Bb84Device, attenuation_db: f64, misalignment: f64) -> LinkRate {
    let mu = device.mean_photon_number;
    let y0 = device.dark_count_probability;
    let eta = device.detector_efficiency * 10f64.powf(-attenuation_db / 10.0);
    let signal = 1.0 - (-eta * mu).exp();
    let gain = y0 + signal;
    let qber = if gain > 0.0 { (0.5 * y0 + misalignment * signal) / gain } else { 0.5 };
    let y1 = y0 + eta;
    let q1 = y1 * mu * (-mu).exp();
    let e1 = if y1 > 0.0 { (0.5 * y0 + misalignment * eta) / y1 } else { 0.5 };
    let per_pulse =
        0.5 * (q1 * (1.0 - h2(e1)) - device.error_correction_efficiency * gain * h2(qber));
    let snr_db = if y0 > 0.0 { 10.0 * (signal / y0).log10() } else { f64::INFINITY };
    let aborted = qber > device.abort_qber;
    let skr_bps = if aborted { 0.0 } else { (per_pulse * device.pulse_rate_hz).max(0.0) };
    LinkRate { skr_bps, qber, snr_db, aborted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Bb84Device {
        Bb84Device {
            pulse_rate_hz: 1.0e9,
            mean_photon_number: 0.5,
            detector_efficiency: 0.1,
            dark_count_probability: 1.0e-6,
            error_correction_efficiency: 1.16,
            abort_qber: 0.11,
        }
    }

    #[test]
    fn a_metro_link_gives_megabits() {
        // 25 km of 0.2 dB/km fibre.
        let rate = decoy_bb84(&device(), 5.0, 0.01);
        assert!((3.0e6..4.5e6).contains(&rate.skr_bps), "{rate:?}");
        assert!((0.009..0.011).contains(&rate.qber), "{rate:?}");
        assert!(!rate.aborted);
        assert!(rate.snr_db > 40.0);
    }

    #[test]
    fn the_rate_falls_with_distance_and_ends() {
        let mut last = f64::INFINITY;
        for att in [0.0, 5.0, 10.0, 20.0, 30.0] {
            let r = decoy_bb84(&device(), att, 0.01).skr_bps;
            assert!(r < last, "rate must fall with attenuation");
            last = r;
        }
        // About 250 km: dark counts dominate, no key.
        assert_eq!(decoy_bb84(&device(), 50.0, 0.01).skr_bps, 0.0);
    }

    #[test]
    fn a_high_error_rate_aborts() {
        let r = decoy_bb84(&device(), 5.0, 0.12);
        assert!(r.aborted);
        assert_eq!(r.skr_bps, 0.0);
        assert!(r.qber > 0.11);
    }
}
