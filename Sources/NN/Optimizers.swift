// Optimizers.swift — Adam/AdamW and SGD on trainable parameters, with PyTorch's update formulas and
// state that can be saved and restored.
import CKernels
import Foundation
import Tensors
import WeightFiles

/// An optimizer over a fixed list of parameters.
public protocol Optimizer: AnyObject {
    /// The parameters it updates (frozen ones are skipped by the constructors).
    var parameters: [Tensor] { get }
    /// Learning rate (may be changed between steps, e.g. by a schedule).
    var learningRate: Float { get set }
    /// One update from the current gradients; parameters without a gradient are left alone (as PyTorch).
    func step()
    /// The optimizer state as named tensors, `state.<i>.<name>` per parameter index (PyTorch's layout).
    func stateDict() -> StateDict
    /// Restores a state written by `stateDict()` for the same parameter list.
    func loadStateDict(_ state: StateDict) throws
}

extension Optimizer {
    /// Drops every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`).
    public func zeroGrad() {
        for p in parameters { p.grad = nil }
    }
}

/// Runs `body` with subnormal floats flushed to zero: x86's MXCSR flush-to-zero and denormals-are-zero bits, as
/// `torch.set_flush_denormal(True)` sets them, restored afterwards (the kernels' numerics stay as they are).
///
/// SGD's update runs under it; Adam's kernel (ck_adam_update_f32) sets the same bits on each of its threads.
///
/// Why: the moments of a parameter whose gradient stays at zero (a dead unit) decay geometrically, Adam's m by β₁ = 0.9
/// a step and SGD's momentum by μ, into the subnormal range, where every multiply takes a microcode assist. Measured with `bench-scale` (one
/// epoch of the head, 30 000 frames, 3 750 steps): 141 frames/s with subnormals against 2 051 flushed. A flushed value
/// is below 1.2e-38: the update it would have made (≤ lr·1e-38/eps ≈ 1e-33) is far below a weight's last bit.
func withSubnormalsFlushed<R>(_ body: () throws -> R) rethrows -> R {
    #if arch(x86_64)
    var saved = fenv_t()
    fegetenv(&saved)
    var flushing = saved
    flushing.__mxcsr |= 0x8040  // bit 15 flush-to-zero, bit 6 denormals-are-zero
    fesetenv(&flushing)
    defer { fesetenv(&saved) }
    #endif
    return try body()
}

/// Calls `body` on contiguous runs that cover 0..<count: one run below `minimumPerRun` elements a run, else one per
/// kernel thread, run side by side. Each run has subnormals flushed on the thread that runs it (MXCSR is per
/// thread). An update is elementwise, so the split changes no result. Measured in `bench-model`'s train step, when
/// Adam still ran here: its update over ResNet-50's 25.6 M parameters was 4.5% of the step on one thread.
func forEachRun(of count: Int, minimumPerRun: Int = 1 << 16, _ body: (Range<Int>) -> Void) {
    let runs = max(1, min(Kernels.numThreads, count / minimumPerRun))
    guard runs > 1 else { return withSubnormalsFlushed { body(0 ..< count) } }
    DispatchQueue.concurrentPerform(iterations: runs) { run in
        withSubnormalsFlushed { body(count * run / runs ..< count * (run + 1) / runs) }
    }
}

/// A malformed optimizer state.
public struct OptimizerStateError: Error, CustomStringConvertible {
    public let description: String
}

/// Adam with bias correction, PyTorch's `torch.optim.Adam` (amsgrad off) and, with `decoupled`,
/// `torch.optim.AdamW`. Kingma & Ba 2014, https://arxiv.org/abs/1412.6980; Loshchilov & Hutter 2017,
/// https://arxiv.org/abs/1711.05101.
///
/// Per parameter with gradient g at step t:
/// g += λ·p (Adam) or p −= lr·λ·p (AdamW); m = β₁m + (1−β₁)g; v = β₂v + (1−β₂)g²;
/// p −= lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
public final class Adam: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    /// AdamW's decoupled weight decay instead of Adam's L2 term.
    public let decoupled: Bool
    /// Steps taken per parameter.
    public private(set) var steps: [Int]
    private var expAvg: [[Float]]
    private var expAvgSq: [[Float]]

    /// - Parameters:
    ///   - parameters: the tensors to update; those with `requiresGrad == false` are left out.
    ///   - learningRate: lr (PyTorch 1e-3).
    ///   - betas: (β₁, β₂) (PyTorch (0.9, 0.999)).
    ///   - eps: ε (PyTorch 1e-8).
    ///   - weightDecay: λ (PyTorch 0 for Adam, 1e-2 for AdamW).
    ///   - decoupled: AdamW when true.
    public init(parameters: [Tensor], learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 0, decoupled: Bool = false) {
        self.parameters = parameters.filter(\.requiresGrad)
        self.learningRate = learningRate
        (beta1, beta2) = betas
        self.eps = eps
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        steps = Array(repeating: 0, count: self.parameters.count)
        expAvg = self.parameters.map { [Float](repeating: 0, count: $0.count) }
        expAvgSq = expAvg
    }

    /// AdamW, PyTorch's `torch.optim.AdamW` defaults (weight decay 1e-2).
    public static func adamW(parameters: [Tensor], learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                             eps: Float = 1e-8, weightDecay: Float = 1e-2) -> Adam {
        Adam(parameters: parameters, learningRate: learningRate, betas: betas, eps: eps, weightDecay: weightDecay, decoupled: true)
    }

    public func step() { update() }

    private func update() {
        for (index, parameter) in parameters.enumerated() {
            guard let grad = parameter.grad else { continue }
            steps[index] += 1
            let t = Double(steps[index])
            let biasCorrection1 = 1 - pow(Double(beta1), t)
            let biasCorrection2Sqrt = (1 - pow(Double(beta2), t)).squareRoot()
            var scalars = ck_adam_step(
                learning_rate: learningRate, beta1: beta1, beta2: beta2, eps: eps, weight_decay: weightDecay,
                decoupled: decoupled ? 1 : 0, step_size: Float(Double(learningRate) / biasCorrection1),
                inverse_bias_correction2_sqrt: Float(1 / biasCorrection2Sqrt))
            // The kernel reads count elements of each array: a size mismatch is a programming error, never a read
            // past an array.
            let count = parameter.count
            precondition(parameter.data.count == count && grad.count == count && expAvg[index].count == count
                         && expAvgSq[index].count == count,
                         "Adam: parameter \(index) of \(count) values has \(parameter.data.count) values, a gradient of "
                         + "\(grad.count) and moments of \(expAvg[index].count) and \(expAvgSq[index].count)")
            var m = expAvg[index], v = expAvgSq[index]
            expAvg[index] = []; expAvgSq[index] = []  // unique references: update in place
            var p = parameter.data
            parameter.data = []
            let status = p.withUnsafeMutableBufferPointer { p in
                grad.withUnsafeBufferPointer { g in
                    m.withUnsafeMutableBufferPointer { m in
                        v.withUnsafeMutableBufferPointer { v in
                            Kernels.table.adam_update(p.baseAddress, m.baseAddress, v.baseAddress, g.baseAddress,
                                                      p.count, &scalars)
                        }
                    }
                }
            }
            Kernels.check(status, "Adam")
            parameter.data = p
            expAvg[index] = m; expAvgSq[index] = v
        }
    }

    public func stateDict() -> StateDict {
        var state = StateDict()
        for index in parameters.indices {
            let shape = parameters[index].shape
            state["state.\(index).step"] = WeightTensor(shape: [], floats: [Float(steps[index])])
            state["state.\(index).exp_avg"] = WeightTensor(shape: shape, floats: expAvg[index])
            state["state.\(index).exp_avg_sq"] = WeightTensor(shape: shape, floats: expAvgSq[index])
        }
        return state
    }

    public func loadStateDict(_ state: StateDict) throws {
        var newSteps = steps, newAvg = expAvg, newAvgSq = expAvgSq
        for index in parameters.indices {
            let count = parameters[index].count
            guard let step = state["state.\(index).step"], step.count == 1,
                  let avg = state["state.\(index).exp_avg"], avg.count == count,
                  let avgSq = state["state.\(index).exp_avg_sq"], avgSq.count == count
            else { throw OptimizerStateError(description: "Adam state: entry for parameter \(index) missing or of the wrong size") }
            // A state file is untrusted: Int(_:) of a NaN or of 1e30 would trap, and a negative second moment or a
            // non-finite moment would turn every later update into NaN. PyTorch counts steps in a float, exact to 2²⁴.
            let stepValue = step.floats[0]
            guard stepValue.isFinite, stepValue >= 0, stepValue <= 16_777_216, stepValue == stepValue.rounded() else {
                throw OptimizerStateError(description: "Adam state: state.\(index).step is \(stepValue), not a step count")
            }
            if let bad = avg.floats.firstIndex(where: { !$0.isFinite }) {
                throw OptimizerStateError(description: "Adam state: state.\(index).exp_avg[\(bad)] is \(avg.floats[bad])")
            }
            if let bad = avgSq.floats.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
                throw OptimizerStateError(
                    description: "Adam state: state.\(index).exp_avg_sq[\(bad)] is \(avgSq.floats[bad]), not a finite square")
            }
            newSteps[index] = Int(stepValue)
            newAvg[index] = avg.floats
            newAvgSq[index] = avgSq.floats
        }
        steps = newSteps; expAvg = newAvg; expAvgSq = newAvgSq
    }
}

/// Stochastic gradient descent with momentum, PyTorch's `torch.optim.SGD`:
/// g += λ·p; b = μ·b + (1 − dampening)·g (b = g at the first step); g = g + μ·b (Nesterov) or b; p −= lr·g.
/// Sutskever et al. 2013, http://proceedings.mlr.press/v28/sutskever13.html.
public final class SGD: Optimizer {
    public let parameters: [Tensor]
    public var learningRate: Float
    public let momentum: Float, dampening: Float, weightDecay: Float, nesterov: Bool
    private var momentumBuffers: [[Float]?]

    /// - Parameters:
    ///   - parameters: the tensors to update; those with `requiresGrad == false` are left out.
    ///   - learningRate: lr.
    ///   - momentum: μ (0: plain SGD).
    ///   - dampening: dampening of the momentum.
    ///   - weightDecay: L2 coefficient λ.
    ///   - nesterov: Nesterov momentum (needs μ > 0 and no dampening, as PyTorch).
    public init(parameters: [Tensor], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                weightDecay: Float = 0, nesterov: Bool = false) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum requires a momentum and zero dampening")
        self.parameters = parameters.filter(\.requiresGrad)
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        momentumBuffers = Array(repeating: nil, count: self.parameters.count)
    }

    public func step() { update() }

    private func update() {
        for (index, parameter) in parameters.enumerated() {
            guard let grad = parameter.grad else { continue }
            let (lr, mu, damp, wd, nesterov) = (learningRate, momentum, dampening, weightDecay, self.nesterov)
            let firstStep = momentumBuffers[index] == nil
            var buffer = momentumBuffers[index] ?? (mu != 0 ? [Float](repeating: 0, count: parameter.count) : [])
            momentumBuffers[index] = nil
            var p = parameter.data
            parameter.data = []
            p.withUnsafeMutableBufferPointer { p in
                grad.withUnsafeBufferPointer { g in
                    buffer.withUnsafeMutableBufferPointer { b in
                        forEachRun(of: p.count) { run in for i in run {
                            var d = g[i] + wd * p[i]
                            if mu != 0 {
                                b[i] = firstStep ? d : mu * b[i] + (1 - damp) * d
                                d = nesterov ? d + mu * b[i] : b[i]
                            }
                            p[i] -= lr * d
                        } }
                    }
                }
            }
            parameter.data = p
            if mu != 0 { momentumBuffers[index] = buffer }
        }
    }

    public func stateDict() -> StateDict {
        var state = StateDict()
        for (index, buffer) in momentumBuffers.enumerated() {
            if let buffer { state["state.\(index).momentum_buffer"] = WeightTensor(shape: parameters[index].shape, floats: buffer) }
        }
        return state
    }

    public func loadStateDict(_ state: StateDict) throws {
        var buffers = [[Float]?](repeating: nil, count: parameters.count)
        for index in parameters.indices {
            guard let entry = state["state.\(index).momentum_buffer"] else { continue }
            guard entry.count == parameters[index].count else {
                throw OptimizerStateError(description: "SGD state: momentum buffer \(index) has \(entry.count) values, parameter has \(parameters[index].count)")
            }
            buffers[index] = entry.floats
        }
        momentumBuffers = buffers
    }
}
