// ResNet.swift — torchvision's ResNet family: the blocks, the network and its depth table.
// He et al. 2015, "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385;
// structure, keys and initialisation follow torchvision/models/resnet.py (stride on the 3x3 conv of
// the Bottleneck, "ResNet v1.5").
import NN
import Tensors

/// Which residual block a ResNet stacks.
public enum ResidualBlockKind: Sendable {
    /// Two 3x3 convolutions (ResNet-18/34); expansion 1.
    case basic
    /// 1x1 → 3x3 (strided) → 1x1 convolutions (ResNet-50/101/152); expansion 4.
    case bottleneck

    /// Output channels per `planes`.
    public var expansion: Int { self == .basic ? 1 : 4 }
}

/// The shape of a ResNet: block kind, blocks per stage, widths and classifier.
public struct ResNetConfig: Sendable, Equatable {
    public var block: ResidualBlockKind
    /// Blocks in layer1…layer4.
    public var layers: [Int]
    /// Channels of the stem (conv1); torchvision: 64.
    public var stemWidth: Int
    /// `planes` of layer1…layer4; torchvision: 64, 128, 256, 512.
    public var widths: [Int]
    /// Classes of `fc`; nil replaces `fc` by the identity (a feature extractor with no `fc.*` keys).
    public var numClasses: Int?

    public init(block: ResidualBlockKind, layers: [Int], stemWidth: Int = 64, widths: [Int] = [64, 128, 256, 512],
                numClasses: Int? = 1000) {
        precondition(layers.count == 4 && widths.count == 4 && layers.allSatisfy { $0 >= 1 }, "ResNetConfig: four stages of at least one block")
        self.block = block
        self.layers = layers
        self.stemWidth = stemWidth
        self.widths = widths
        self.numClasses = numClasses
    }

    /// The depth table of torchvision: 18, 34 (basic) and 50, 101, 152 (bottleneck).
    public static func depth(_ depth: Int, numClasses: Int? = 1000) -> ResNetConfig {
        switch depth {
        case 18: return ResNetConfig(block: .basic, layers: [2, 2, 2, 2], numClasses: numClasses)
        case 34: return ResNetConfig(block: .basic, layers: [3, 4, 6, 3], numClasses: numClasses)
        case 50: return ResNetConfig(block: .bottleneck, layers: [3, 4, 6, 3], numClasses: numClasses)
        case 101: return ResNetConfig(block: .bottleneck, layers: [3, 4, 23, 3], numClasses: numClasses)
        case 152: return ResNetConfig(block: .bottleneck, layers: [3, 8, 36, 3], numClasses: numClasses)
        default: preconditionFailure("ResNet depth \(depth) is not one of 18, 34, 50, 101, 152")
        }
    }

    /// A narrow, shallow bottleneck ResNet for fast tests and parity fixtures: the same code paths as
    /// ResNet-50 (stem, max pool, strided 3x3, downsample and identity shortcuts) with few channels.
    public static func narrow(numClasses: Int? = 10) -> ResNetConfig {
        ResNetConfig(block: .bottleneck, layers: [2, 1, 1, 1], stemWidth: 8, widths: [4, 8, 8, 16], numClasses: numClasses)
    }

    /// The narrow config with basic blocks (the ResNet-18/34 code path).
    public static func narrowBasic(numClasses: Int? = 10) -> ResNetConfig {
        ResNetConfig(block: .basic, layers: [2, 1, 1, 1], stemWidth: 8, widths: [8, 8, 16, 16], numClasses: numClasses)
    }

    /// Width of the pooled features (the input of `fc`).
    public var featureCount: Int { widths[3] * block.expansion }
}

/// torchvision's init of a ResNet convolution: kaiming_normal, fan_out, relu gain; no bias.
private func resNetConv(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int, generator: RandomGenerator) -> Conv2d {
    let conv = Conv2d(inChannels, outChannels, kernelSize: kernelSize, stride: stride, padding: kernelSize / 2, bias: false,
                      generator: generator)
    conv.weight.data = Initializer.kaimingNormalFanOut(conv.weight.shape, generator: generator)
    return conv
}

/// relu?(bn(conv(x)) + residual). In evaluation without gradients the batch norm is folded into the
/// convolution (one pass over the activations less; the same function up to float rounding); in training the
/// batch norm, the residual add and the relu are one pass.
@inline(__always)
func convBN(_ conv: Conv2d, _ bn: BatchNorm2d, _ x: Tensor, residual: Tensor? = nil, relu applyRelu: Bool = false) -> Tensor {
    guard !bn.training, !Tensor.needsGrad(x, conv.weight, conv.bias, bn.weight, bn.bias) else {
        return bn(conv(x), residual: residual, relu: applyRelu)
    }
    if residual != nil || applyRelu { return fusedConvBN(conv, bn, x, residual: residual, relu: applyRelu) }
    let folded = bn.folded(into: conv)
    return conv2d(x, weight: folded.weight, bias: folded.bias, stride: conv.stride, padding: conv.padding)
}

/// True when a block can take the inference path: BatchNorm on running statistics and no gradient wanted.
@inline(__always)
func inferenceOnly(_ bn: BatchNorm2d, _ tensors: Tensor?...) -> Bool {
    !bn.training && !tensors.contains { $0.map { Tensor.needsGrad($0) } ?? false }
}

/// relu?(bn(conv(x)) + residual) with the batch norm folded into the convolution and the residual add and
/// ReLU applied while each output block is in cache: ResNet's inference path.
@inline(__always)
func fusedConvBN(_ conv: Conv2d, _ bn: BatchNorm2d, _ x: Tensor, residual: Tensor? = nil, relu: Bool) -> Tensor {
    let folded = bn.folded(into: conv)
    return conv2dInference(x, weight: folded.weight, bias: folded.bias, residual: residual, relu: relu,
                           stride: conv.stride, padding: conv.padding, packed: folded.packed)
}

/// The inference shortcut: the input, or the folded conv1x1 + bn when the shape changes.
@inline(__always)
func fusedShortcut(_ downsample: Sequential?, _ x: Tensor) -> Tensor {
    guard let downsample else { return x }
    return fusedConvBN(downsample[0] as! Conv2d, downsample[1] as! BatchNorm2d, x, relu: false)
}

/// Frees a training block's batch-norm outputs once its forward is done with them: each is remade from its
/// convolution's output in one pass when the backward reads it (`Tensor.releaseValues()`), rather than kept. What
/// backward keeps then is each convolution's output and each block's output. Outside training (no tape) this
/// frees nothing.
@inline(__always)
func releaseIntermediates(_ tensors: Tensor?...) {
    for case let tensor? in tensors { tensor.releaseValues() }
}

/// The shortcut of a block: the input, or conv1x1 + bn when the shape changes.
@inline(__always)
func shortcut(_ downsample: Sequential?, _ x: Tensor) -> Tensor {
    guard let downsample else { return x }
    return convBN(downsample[0] as! Conv2d, downsample[1] as! BatchNorm2d, x)
}

/// torchvision's `BasicBlock`: conv3x3(stride) → bn → relu → conv3x3 → bn, plus the shortcut, → relu.
public final class BasicBlock: Module, UnaryLayer {
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let conv2: Conv2d
    public let bn2: BatchNorm2d
    /// conv1x1(stride) + bn when the shape changes, else nil (identity shortcut).
    public let downsample: Sequential?

    public init(inplanes: Int, planes: Int, stride: Int, generator: RandomGenerator) {
        conv1 = resNetConv(inplanes, planes, kernelSize: 3, stride: stride, generator: generator)
        bn1 = BatchNorm2d(planes)
        conv2 = resNetConv(planes, planes, kernelSize: 3, stride: 1, generator: generator)
        bn2 = BatchNorm2d(planes)
        downsample = (stride != 1 || inplanes != planes)
            ? Sequential(resNetConv(inplanes, planes, kernelSize: 1, stride: stride, generator: generator), BatchNorm2d(planes))
            : nil
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        if inferenceOnly(bn1, x, conv1.weight, conv2.weight, bn1.weight, bn2.weight) {
            let h = fusedConvBN(conv1, bn1, x, relu: true)
            return fusedConvBN(conv2, bn2, h, residual: fusedShortcut(downsample, x), relu: true)
        }
        let identity = shortcut(downsample, x)
        let h = convBN(conv1, bn1, x, relu: true)
        let y = convBN(conv2, bn2, h, residual: identity, relu: true)
        releaseIntermediates(h, downsample == nil ? nil : identity)
        return y
    }
}

/// torchvision's `Bottleneck` (v1.5): conv1x1 → bn → relu → conv3x3(stride) → bn → relu → conv1x1 → bn,
/// plus the shortcut, → relu. Output channels: 4·planes.
public final class Bottleneck: Module, UnaryLayer {
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let conv2: Conv2d
    public let bn2: BatchNorm2d
    public let conv3: Conv2d
    public let bn3: BatchNorm2d
    /// conv1x1(stride) + bn when the shape changes, else nil (identity shortcut).
    public let downsample: Sequential?

    public init(inplanes: Int, planes: Int, stride: Int, generator: RandomGenerator) {
        let out = planes * ResidualBlockKind.bottleneck.expansion
        conv1 = resNetConv(inplanes, planes, kernelSize: 1, stride: 1, generator: generator)
        bn1 = BatchNorm2d(planes)
        conv2 = resNetConv(planes, planes, kernelSize: 3, stride: stride, generator: generator)
        bn2 = BatchNorm2d(planes)
        conv3 = resNetConv(planes, out, kernelSize: 1, stride: 1, generator: generator)
        bn3 = BatchNorm2d(out)
        downsample = (stride != 1 || inplanes != out)
            ? Sequential(resNetConv(inplanes, out, kernelSize: 1, stride: stride, generator: generator), BatchNorm2d(out))
            : nil
        super.init()
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        if inferenceOnly(bn1, x, conv1.weight, conv2.weight, conv3.weight, bn1.weight, bn2.weight, bn3.weight) {
            let h = fusedConvBN(conv2, bn2, fusedConvBN(conv1, bn1, x, relu: true), relu: true)
            return fusedConvBN(conv3, bn3, h, residual: fusedShortcut(downsample, x), relu: true)
        }
        let identity = shortcut(downsample, x)
        let h1 = convBN(conv1, bn1, x, relu: true)
        let h2 = convBN(conv2, bn2, h1, relu: true)
        let y = convBN(conv3, bn3, h2, residual: identity, relu: true)
        releaseIntermediates(h1, h2, downsample == nil ? nil : identity)
        return y
    }
}

/// torchvision's `ResNet`: conv1 (7x7/2) → bn1 → relu → maxpool (3x3/2) → layer1…layer4 → global average
/// pool → fc. State-dict keys are torchvision's (`conv1.weight`, `layer1.0.conv1.weight`,
/// `layer2.0.downsample.0.weight`, `fc.bias`, …).
public final class ResNet: Module, UnaryLayer {
    public let config: ResNetConfig
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let layer1: Sequential
    public let layer2: Sequential
    public let layer3: Sequential
    public let layer4: Sequential
    /// The classifier, or nil for a feature extractor (torchvision's `fc = nn.Identity()`).
    public let fc: Linear?

    /// - Parameters:
    ///   - config: depth table entry or a custom shape.
    ///   - generator: initialisation stream (torchvision's scheme: kaiming_normal fan_out convs, BN 1/0,
    ///     fc PyTorch's Linear default).
    public init(config: ResNetConfig, generator: RandomGenerator = Initializer.defaultGenerator) {
        self.config = config
        conv1 = resNetConv(3, config.stemWidth, kernelSize: 7, stride: 2, generator: generator)
        bn1 = BatchNorm2d(config.stemWidth)
        var inplanes = config.stemWidth
        var stages: [Sequential] = []
        for stage in 0..<4 {
            let planes = config.widths[stage]
            var blocks: [UnaryModule] = []
            for index in 0..<config.layers[stage] {
                let stride = (stage > 0 && index == 0) ? 2 : 1
                switch config.block {
                case .basic: blocks.append(BasicBlock(inplanes: inplanes, planes: planes, stride: stride, generator: generator))
                case .bottleneck: blocks.append(Bottleneck(inplanes: inplanes, planes: planes, stride: stride, generator: generator))
                }
                inplanes = planes * config.block.expansion
            }
            stages.append(Sequential(blocks))
        }
        (layer1, layer2, layer3, layer4) = (stages[0], stages[1], stages[2], stages[3])
        fc = config.numClasses.map { Linear(inplanes, $0, generator: generator) }
        super.init()
    }

    /// torchvision's constructors by depth (18, 34, 50, 101, 152).
    public convenience init(depth: Int, numClasses: Int? = 1000, generator: RandomGenerator = Initializer.defaultGenerator) {
        self.init(config: .depth(depth, numClasses: numClasses), generator: generator)
    }

    /// torchvision's `resnet18()`.
    public static func resnet18(numClasses: Int? = 1000, generator: RandomGenerator = Initializer.defaultGenerator) -> ResNet {
        ResNet(depth: 18, numClasses: numClasses, generator: generator)
    }
    /// torchvision's `resnet34()`.
    public static func resnet34(numClasses: Int? = 1000, generator: RandomGenerator = Initializer.defaultGenerator) -> ResNet {
        ResNet(depth: 34, numClasses: numClasses, generator: generator)
    }
    /// torchvision's `resnet50()`.
    public static func resnet50(numClasses: Int? = 1000, generator: RandomGenerator = Initializer.defaultGenerator) -> ResNet {
        ResNet(depth: 50, numClasses: numClasses, generator: generator)
    }
    /// torchvision's `resnet101()`.
    public static func resnet101(numClasses: Int? = 1000, generator: RandomGenerator = Initializer.defaultGenerator) -> ResNet {
        ResNet(depth: 101, numClasses: numClasses, generator: generator)
    }
    /// torchvision's `resnet152()`.
    public static func resnet152(numClasses: Int? = 1000, generator: RandomGenerator = Initializer.defaultGenerator) -> ResNet {
        ResNet(depth: 152, numClasses: numClasses, generator: generator)
    }

    /// Width of the pooled features.
    public var featureCount: Int { config.featureCount }

    /// The pooled features before `fc`.
    /// - Parameter x: images (N, 3, H, W).
    /// - Returns: (N, featureCount).
    public func features(_ x: Tensor) -> Tensor {
        let stem = inferenceOnly(bn1, x, conv1.weight, bn1.weight) ? fusedConvBN(conv1, bn1, x, relu: true)
                                                                    : convBN(conv1, bn1, x, relu: true)
        var y = maxPool2d(stem, kernelSize: (3, 3), stride: (2, 2), padding: (1, 1))
        releaseIntermediates(stem)
        y = layer4(layer3(layer2(layer1(y))))
        return globalAvgPool2d(y)
    }

    /// - Parameter x: images (N, 3, H, W).
    /// - Returns: logits (N, numClasses), or the features (N, featureCount) when there is no `fc`.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let f = features(x)
        return fc.map { $0(f) } ?? f
    }
}
