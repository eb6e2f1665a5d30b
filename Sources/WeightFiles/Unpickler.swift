/// An allowlist unpickler for the pickles `torch.save` writes for state dicts (protocol 2; the few
/// protocol 3–5 opcodes a newer pickler may add are accepted too).
///
/// It builds values, it never calls anything: the only "callables" are the globals below, each
/// interpreted by hand. Any other global, and any opcode outside the list, is an error naming it.
/// Reference: CPython `Lib/pickle.py` and `Lib/pickletools.py` (opcode semantics), and
/// `torch/_weights_only_unpickler.py` (the same idea in PyTorch).
///
/// Containers live in arenas and values refer to them by index, so a pickle that nests a million lists
/// cannot overflow the stack when it is freed, and `APPEND`/`SETITEM` mutate in place (memo entries
/// share containers as in Python).
struct Unpickler {
    enum Global: Equatable {
        case orderedDict
        case rebuildTensorV2
        case rebuildParameter
        case rebuildParameterWithState
        case storageType(WeightDType)
    }

    struct StorageRef: Equatable {
        let dtype: WeightDType
        let key: String
        /// Element count recorded in the persistent id.
        let count: Int
    }

    /// A tensor as the pickle describes it: which storage, and the view into it.
    struct TensorRef {
        let storage: StorageRef
        let layout: TensorLayout
    }

    enum Value {
        case none
        case bool(Bool)
        case int(Int64)
        case float(Double)
        case string(String)
        case list(Int)
        case tuple(Int)
        case dict(Int)
        case global(Global)
        case storage(StorageRef)
        case tensor(Int)

        var typeName: String {
            switch self {
            case .none: return "None"
            case .bool: return "bool"
            case .int: return "int"
            case .float: return "float"
            case .string: return "str"
            case .list: return "list"
            case .tuple: return "tuple"
            case .dict: return "dict"
            case .global: return "global"
            case .storage: return "storage"
            case .tensor: return "tensor"
            }
        }
    }

    enum DictKey: Hashable {
        case string(String)
        case int(Int64)
    }

    struct Dict {
        var keys: [DictKey] = []
        var values: [Value] = []
        var index: [DictKey: Int] = [:]
        /// The state a `BUILD` gave the object (an OrderedDict's `_metadata` lands here).
        var attributes: Value?

        mutating func set(_ key: DictKey, _ value: Value) {
            if let i = index[key] {
                values[i] = value
            } else {
                index[key] = keys.count
                keys.append(key)
                values.append(value)
            }
        }

        subscript(key: String) -> Value? {
            index[.string(key)].map { values[$0] }
        }
    }

    private(set) var lists: [[Value]] = []
    private(set) var tuples: [[Value]] = []
    private(set) var dicts: [Dict] = []
    private(set) var tensors: [TensorRef] = []

    private let bytes: Bytes
    private var position = 0
    private var stack: [Value] = []
    private var marks: [Int] = []
    private var memo: [Int: Value] = [:]
    /// `intTuple` results by tuple arena index: torch's pickles share one size tuple among many tensors
    /// through the memo, so each tuple is converted once.
    private var intTuples: [Int: [Int]] = [:]
    /// Work still allowed (see `charge`).
    private var workRemaining: Int

    private init(_ bytes: Bytes) {
        self.bytes = bytes
        workRemaining = bytes.count.multipliedReportingOverflow(by: 4).partialValue &+ Unpickler.baseWork
    }

    /// The largest data.pkl read. A state dict's pickle is small (torchvision's largest are a few hundred
    /// KB); the machine keeps tens of bytes per opcode byte, so the cap bounds its memory.
    static let maximumPickleBytes = 16 << 20

    /// Storage keys are torch's record numbers ("0", "1", …); anything longer is not a torch file, and a
    /// long key repeated through the memo would be hashed again for every tensor.
    static let maximumStorageKeyBytes = 256

    /// Work a pickle may cause beyond one step per byte: 4 units per byte plus this much. A unit is one
    /// value copied or one key byte hashed. Operations that repeat work on a memoized value (an
    /// `OrderedDict(list)` of a shared list, a long key set again and again) are charged; a pickle that
    /// torch.save wrote uses a small fraction.
    private static let baseWork = 1 << 20

    /// Unpickles `pickle`, returning the top-level value and the arenas it refers to.
    static func load(_ pickle: UnsafeRawBufferPointer) throws -> (Value, Unpickler) {
        var machine = Unpickler(Bytes(pickle))
        let top = try machine.run()
        // The arenas are all the caller needs; drop the machine's working state.
        machine.stack = []
        machine.memo = [:]
        machine.intTuples = [:]
        return (top, machine)
    }

    static let allowedGlobals =
        "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter(_with_state), torch.*Storage"

    // MARK: - The machine

    /// Takes `units` of work from the budget, or reports a pickle that amplifies its size.
    private mutating func charge(_ units: Int, _ offset: Int) throws {
        guard units <= workRemaining else {
            throw FormatProblem.corrupt(
                "pickle at offset \(offset) repeats work on shared values far beyond what a file of \(bytes.count) bytes needs (crafted to exhaust time or memory?)")
        }
        workRemaining -= units
    }

    private mutating func run() throws -> Value {
        while position < bytes.count {
            let offset = position
            let opcode = try readU8()
            switch opcode {
            case 0x80: // PROTO
                let version = try readU8()
                guard version <= 5 else { throw FormatProblem.unsupported("pickle protocol \(version) is not supported") }
            case 0x95: // FRAME: a length hint only
                _ = try read(8)
            case 0x2E: // STOP
                guard let top = stack.last else { throw underflow(opcode, offset) }
                return top
            case 0x7D: push(newDict())                       // EMPTY_DICT
            case 0x5D: push(newList([]))                     // EMPTY_LIST
            case 0x29: push(newTuple([]))                    // EMPTY_TUPLE
            case 0x28: marks.append(stack.count)             // MARK
            case 0x85, 0x86, 0x87:                           // TUPLE1, TUPLE2, TUPLE3
                let n = Int(opcode - 0x84)
                guard stack.count >= n else { throw underflow(opcode, offset) }
                let items = Array(stack[(stack.count - n)...])
                stack.removeLast(n)
                push(newTuple(items))
            case 0x74: push(newTuple(try popMark(opcode, offset)))   // TUPLE
            case 0x6C: push(newList(try popMark(opcode, offset)))    // LIST
            case 0x64:                                               // DICT
                let items = try popMark(opcode, offset)
                let id = dicts.count
                dicts.append(Dict())
                try setItems(id, items, offset)
                push(.dict(id))
            case 0x58: push(.string(try readString(length: Int(try readU32()), offset)))   // BINUNICODE
            case 0x8C: push(.string(try readString(length: Int(try readU8()), offset)))    // SHORT_BINUNICODE
            case 0x8D:                                                                      // BINUNICODE8
                guard let length = Int(exactly: try readU64()) else { throw truncated(offset) }
                push(.string(try readString(length: length, offset)))
            case 0x4A: push(.int(Int64(Int32(bitPattern: try readU32()))))   // BININT
            case 0x4B: push(.int(Int64(try readU8())))                       // BININT1
            case 0x4D: push(.int(Int64(try readU16())))                      // BININT2
            case 0x8A: push(.int(try readLong1(offset)))                     // LONG1
            case 0x47:                                                       // BINFLOAT, big-endian
                let raw = try read(8)
                var bits: UInt64 = 0
                for byte in raw { bits = bits << 8 | UInt64(byte) }
                push(.float(Double(bitPattern: bits)))
            case 0x88: push(.bool(true))     // NEWTRUE
            case 0x89: push(.bool(false))    // NEWFALSE
            case 0x4E: push(.none)           // NONE
            case 0x71: try put(Int(try readU8()), opcode, offset)            // BINPUT
            case 0x72: try put(Int(try readU32()), opcode, offset)           // LONG_BINPUT
            case 0x94: try put(memo.count, opcode, offset)                   // MEMOIZE
            case 0x68: try get(Int(try readU8()), offset)                    // BINGET
            case 0x6A: try get(Int(try readU32()), offset)                   // LONG_BINGET
            case 0x30:                                                       // POP
                guard stack.popLast() != nil else { throw underflow(opcode, offset) }
            case 0x31: _ = try popMark(opcode, offset)                       // POP_MARK
            case 0x73:                                                       // SETITEM
                guard stack.count >= 3 else { throw underflow(opcode, offset) }
                let items = Array(stack[(stack.count - 2)...])
                stack.removeLast(2)
                try setItems(try dictID(stack[stack.count - 1], "SETITEM", offset), items, offset)
            case 0x75:                                                       // SETITEMS
                let items = try popMark(opcode, offset)
                guard let target = stack.last else { throw underflow(opcode, offset) }
                try setItems(try dictID(target, "SETITEMS", offset), items, offset)
            case 0x61:                                                       // APPEND
                guard stack.count >= 2, let item = stack.popLast() else { throw underflow(opcode, offset) }
                lists[try listID(stack[stack.count - 1], offset)].append(item)
            case 0x65:                                                       // APPENDS
                let items = try popMark(opcode, offset)
                guard let target = stack.last else { throw underflow(opcode, offset) }
                lists[try listID(target, offset)].append(contentsOf: items)
            case 0x63:                                                       // GLOBAL
                let module = try readLine(offset)
                let name = try readLine(offset)
                push(.global(try resolveGlobal(module, name)))
            case 0x93:                                                       // STACK_GLOBAL
                guard stack.count >= 2, case .string(let name) = stack[stack.count - 1],
                      case .string(let module) = stack[stack.count - 2] else {
                    throw FormatProblem.corrupt("pickle STACK_GLOBAL at offset \(offset) needs two strings")
                }
                stack.removeLast(2)
                push(.global(try resolveGlobal(module, name)))
            case 0x52:                                                       // REDUCE
                guard stack.count >= 2, let args = stack.popLast(), let callable = stack.popLast() else {
                    throw underflow(opcode, offset)
                }
                push(try call(callable, args, offset))
            case 0x81:                                                       // NEWOBJ
                guard stack.count >= 2, let args = stack.popLast(), let cls = stack.popLast() else {
                    throw underflow(opcode, offset)
                }
                guard case .global(.orderedDict) = cls else {
                    throw FormatProblem.disallowed("pickle NEWOBJ at offset \(offset) on a \(cls.typeName) is not allowed")
                }
                push(try call(cls, args, offset))
            case 0x51:                                                       // BINPERSID
                guard let pid = stack.popLast() else { throw underflow(opcode, offset) }
                push(try persistentLoad(pid, offset))
            case 0x62:                                                       // BUILD
                guard stack.count >= 2, let state = stack.popLast() else { throw underflow(opcode, offset) }
                guard case .dict(let id) = stack[stack.count - 1] else {
                    throw FormatProblem.disallowed(
                        "pickle BUILD at offset \(offset) on a \(stack[stack.count - 1].typeName) is not allowed (only on dicts)")
                }
                dicts[id].attributes = state
            default:
                throw FormatProblem.disallowed(Unpickler.opcodeProblem(opcode, offset))
            }
        }
        throw FormatProblem.corrupt("pickle ends at byte \(bytes.count) without a STOP opcode (data.pkl is truncated)")
    }

    // MARK: - Calls: the allowlist's semantics, written out

    private mutating func call(_ callable: Value, _ args: Value, _ offset: Int) throws -> Value {
        guard case .global(let global) = callable else {
            throw FormatProblem.disallowed("pickle REDUCE at offset \(offset) calls a \(callable.typeName), not an allowed global")
        }
        guard case .tuple(let argsID) = args else {
            throw FormatProblem.corrupt("pickle REDUCE at offset \(offset): arguments are a \(args.typeName), not a tuple")
        }
        let arguments = tuples[argsID]
        switch global {
        case .orderedDict:
            let id = dicts.count
            dicts.append(Dict())
            if let initial = arguments.first {
                // OrderedDict([(key, value), …])
                guard arguments.count == 1, case .list(let listID) = initial else {
                    throw FormatProblem.corrupt("pickle OrderedDict(...) at offset \(offset) with unexpected arguments")
                }
                try charge(lists[listID].count, offset)
                var items: [Value] = []
                for pair in lists[listID] {
                    guard case .tuple(let pairID) = pair, tuples[pairID].count == 2 else {
                        throw FormatProblem.corrupt("pickle OrderedDict(...) at offset \(offset): an item is not a pair")
                    }
                    items.append(contentsOf: tuples[pairID])
                }
                try setItems(id, items, offset)
            }
            return .dict(id)
        case .rebuildTensorV2:
            // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard arguments.count >= 4, case .storage(let storage) = arguments[0], case .int(let storageOffset) = arguments[1],
                  let size = try intTuple(arguments[2], offset), let strides = try intTuple(arguments[3], offset),
                  let start = Int(exactly: storageOffset) else {
                throw FormatProblem.corrupt(
                    "pickle _rebuild_tensor_v2 at offset \(offset) has arguments it cannot read (expected storage, offset, size, stride, …)")
            }
            guard size.count <= WeightTensor.maximumRank else {
                throw FormatProblem.unsupported(
                    "pickle _rebuild_tensor_v2 at offset \(offset) builds a tensor of \(size.count) dimensions (at most \(WeightTensor.maximumRank) are supported)")
            }
            tensors.append(TensorRef(storage: storage, layout: TensorLayout(offset: start, shape: size, strides: strides)))
            return .tensor(tensors.count - 1)
        case .rebuildParameter, .rebuildParameterWithState:
            // _rebuild_parameter(data, requires_grad, backward_hooks[, state]): the tensor is the data.
            guard let data = arguments.first, case .tensor = data else {
                throw FormatProblem.corrupt("pickle _rebuild_parameter at offset \(offset) is not given a tensor")
            }
            return data
        case .storageType(let dtype):
            throw FormatProblem.disallowed("pickle calls storage type \(dtype) at offset \(offset); storages come only from persistent ids")
        }
    }

    /// torch's persistent id for a storage: ('storage', torch.<T>Storage, key, location, numel).
    private func persistentLoad(_ pid: Value, _ offset: Int) throws -> Value {
        guard case .tuple(let id) = pid, tuples[id].count == 5, case .string("storage") = tuples[id][0] else {
            throw FormatProblem.disallowed("pickle persistent id at offset \(offset) is not a ('storage', …) record")
        }
        let fields = tuples[id]
        guard case .global(.storageType(let dtype)) = fields[1], case .string(let key) = fields[2],
              case .int(let numel) = fields[4], let count = Int(exactly: numel), count >= 0 else {
            throw FormatProblem.corrupt(
                "pickle storage record at offset \(offset) is malformed (expected a storage type, a string key and an element count >= 0)")
        }
        guard key.utf8.count <= Unpickler.maximumStorageKeyBytes else {
            throw FormatProblem.corrupt(
                "pickle storage record at offset \(offset) has a \(key.utf8.count)-byte key (torch's keys are record numbers)")
        }
        return .storage(StorageRef(dtype: dtype, key: key, count: count))
    }

    private func resolveGlobal(_ module: String, _ name: String) throws -> Global {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch", _) where name.hasSuffix("Storage"):
            guard let dtype = WeightDType(torchStorageName: name) else {
                throw FormatProblem.unsupported("storage type torch.\(name) is not supported")
            }
            return .storageType(dtype)
        default:
            let shown = "\(module).\(name)".unicodeScalars.prefix(120).map { $0.properties.isWhitespace ? " " : String($0) }.joined()
            throw FormatProblem.disallowed("pickle global '\(shown)' is not allowed (only \(Unpickler.allowedGlobals))")
        }
    }

    // MARK: - Helpers

    private mutating func push(_ value: Value) { stack.append(value) }

    private mutating func newDict() -> Value {
        dicts.append(Dict())
        return .dict(dicts.count - 1)
    }

    private mutating func newList(_ items: [Value]) -> Value {
        lists.append(items)
        return .list(lists.count - 1)
    }

    private mutating func newTuple(_ items: [Value]) -> Value {
        tuples.append(items)
        return .tuple(tuples.count - 1)
    }

    private mutating func popMark(_ opcode: UInt8, _ offset: Int) throws -> [Value] {
        guard let mark = marks.popLast(), mark <= stack.count else {
            throw FormatProblem.corrupt("pickle \(Unpickler.opcodeName(opcode)) at offset \(offset) has no MARK")
        }
        let items = Array(stack[mark...])
        stack.removeLast(stack.count - mark)
        return items
    }

    private mutating func setItems(_ id: Int, _ items: [Value], _ offset: Int) throws {
        guard items.count % 2 == 0 else {
            throw FormatProblem.corrupt("pickle SETITEMS at offset \(offset) has an odd number of items")
        }
        var i = 0
        while i < items.count {
            let key: DictKey
            switch items[i] {
            case .string(let s):
                // Hashing the key costs its length; a memoized key can be set again for 2 bytes each time.
                try charge(s.utf8.count, offset)
                key = .string(s)
            case .int(let n): key = .int(n)
            case .bool(let b): key = .int(b ? 1 : 0)
            default:
                throw FormatProblem.unsupported("pickle dict key of type \(items[i].typeName) at offset \(offset) is not supported")
            }
            dicts[id].set(key, items[i + 1])
            i += 2
        }
    }

    private func dictID(_ value: Value, _ opcode: String, _ offset: Int) throws -> Int {
        guard case .dict(let id) = value else {
            throw FormatProblem.corrupt("pickle \(opcode) at offset \(offset) on a \(value.typeName), not a dict")
        }
        return id
    }

    private func listID(_ value: Value, _ offset: Int) throws -> Int {
        guard case .list(let id) = value else {
            throw FormatProblem.corrupt("pickle APPEND at offset \(offset) on a \(value.typeName), not a list")
        }
        return id
    }

    private mutating func put(_ index: Int, _ opcode: UInt8, _ offset: Int) throws {
        guard let top = stack.last else { throw underflow(opcode, offset) }
        memo[index] = top
    }

    private mutating func get(_ index: Int, _ offset: Int) throws {
        guard let value = memo[index] else {
            throw FormatProblem.corrupt("pickle memo index \(index) read at offset \(offset) was never stored")
        }
        push(value)
    }

    /// A tuple of ints as `[Int]`, or nil when the value is not one. Converted once per tuple.
    private mutating func intTuple(_ value: Value, _ offset: Int) throws -> [Int]? {
        guard case .tuple(let id) = value else { return nil }
        if let known = intTuples[id] { return known }
        try charge(tuples[id].count, offset)
        var out: [Int] = []
        out.reserveCapacity(tuples[id].count)
        for item in tuples[id] {
            guard case .int(let n) = item, let v = Int(exactly: n) else { return nil }
            out.append(v)
        }
        intTuples[id] = out
        return out
    }

    private mutating func readU8() throws -> UInt8 {
        guard position < bytes.count else { throw truncated(position) }
        defer { position += 1 }
        return bytes.u8(position)
    }

    private mutating func readU16() throws -> UInt16 {
        guard position <= bytes.count - 2 else { throw truncated(position) }
        defer { position += 2 }
        return bytes.u16(position)
    }

    private mutating func readU32() throws -> UInt32 {
        guard position <= bytes.count - 4 else { throw truncated(position) }
        defer { position += 4 }
        return bytes.u32(position)
    }

    private mutating func readU64() throws -> UInt64 {
        guard position <= bytes.count - 8 else { throw truncated(position) }
        defer { position += 8 }
        return bytes.u64(position)
    }

    private mutating func read(_ length: Int) throws -> UnsafeRawBufferPointer {
        guard length >= 0, position <= bytes.count - length else { throw truncated(position) }
        defer { position += length }
        return bytes.slice(position, length)
    }

    private mutating func readString(length: Int, _ offset: Int) throws -> String {
        let raw = try read(length)
        guard let string = String(validating: raw, as: UTF8.self) else {
            throw FormatProblem.corrupt("pickle string at offset \(offset) is not valid UTF-8")
        }
        return string
    }

    /// A protocol-0 text line (GLOBAL's module and name), at most 256 bytes.
    private mutating func readLine(_ offset: Int) throws -> String {
        var end = position
        while end < bytes.count, bytes.u8(end) != 0x0A {
            end += 1
            if end - position > 256 { throw FormatProblem.corrupt("pickle GLOBAL at offset \(offset) has an overlong name") }
        }
        guard end < bytes.count else { throw truncated(offset) }
        let line = try readString(length: end - position, offset)
        position += 1
        return line
    }

    /// LONG1: a little-endian two's-complement integer of n bytes; more than 8 bytes is out of range.
    private mutating func readLong1(_ offset: Int) throws -> Int64 {
        let n = Int(try readU8())
        let raw = try read(n)
        if n == 0 { return 0 }
        guard n <= 8 else { throw FormatProblem.unsupported("pickle integer at offset \(offset) is wider than 64 bits") }
        var value: UInt64 = 0
        for (i, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        if n < 8, raw[n - 1] & 0x80 != 0 { value |= ~0 << (8 * UInt64(n)) }
        return Int64(bitPattern: value)
    }

    private func truncated(_ offset: Int) -> FormatProblem {
        FormatProblem.corrupt("pickle is truncated at offset \(offset)")
    }

    private func underflow(_ opcode: UInt8, _ offset: Int) -> FormatProblem {
        FormatProblem.corrupt("pickle \(Unpickler.opcodeName(opcode)) at offset \(offset) finds too few values on the stack")
    }

    private static func opcodeProblem(_ opcode: UInt8, _ offset: Int) -> String {
        let hex = "0x" + String(opcode, radix: 16, uppercase: false)
        if let name = otherOpcodes[opcode] {
            return "pickle opcode \(name) (\(hex)) at offset \(offset) is not allowed"
        }
        return "unknown pickle opcode \(hex) at offset \(offset)"
    }

    static func opcodeName(_ opcode: UInt8) -> String {
        handledOpcodes[opcode] ?? otherOpcodes[opcode] ?? "0x" + String(opcode, radix: 16)
    }

    private static let handledOpcodes: [UInt8: String] = [
        0x80: "PROTO", 0x95: "FRAME", 0x2E: "STOP", 0x7D: "EMPTY_DICT", 0x5D: "EMPTY_LIST", 0x29: "EMPTY_TUPLE",
        0x28: "MARK", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3", 0x74: "TUPLE", 0x6C: "LIST", 0x64: "DICT",
        0x58: "BINUNICODE", 0x8C: "SHORT_BINUNICODE", 0x8D: "BINUNICODE8", 0x4A: "BININT", 0x4B: "BININT1",
        0x4D: "BININT2", 0x8A: "LONG1", 0x47: "BINFLOAT", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x4E: "NONE",
        0x71: "BINPUT", 0x72: "LONG_BINPUT", 0x94: "MEMOIZE", 0x68: "BINGET", 0x6A: "LONG_BINGET", 0x30: "POP",
        0x31: "POP_MARK", 0x73: "SETITEM", 0x75: "SETITEMS", 0x61: "APPEND", 0x65: "APPENDS", 0x63: "GLOBAL",
        0x93: "STACK_GLOBAL", 0x52: "REDUCE", 0x81: "NEWOBJ", 0x51: "BINPERSID", 0x62: "BUILD",
    ]

    /// Real pickle opcodes the allowlist leaves out, named in errors.
    private static let otherOpcodes: [UInt8: String] = [
        0x32: "DUP", 0x46: "FLOAT", 0x49: "INT", 0x4C: "LONG", 0x8B: "LONG4", 0x53: "STRING", 0x54: "BINSTRING",
        0x55: "SHORT_BINSTRING", 0x56: "UNICODE", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES", 0x8E: "BINBYTES8",
        0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x69: "INST", 0x6F: "OBJ",
        0x92: "NEWOBJ_EX", 0x50: "PERSID", 0x67: "GET", 0x70: "PUT", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
        0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
    ]
}
