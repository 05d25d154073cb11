// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "detrec",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "detrec", targets: ["detrec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // The only C: the ioctl entry point and kernel structs Swift cannot express.
        .target(name: "CKVM"),
        .target(name: "CHost", linkerSettings: [.linkedLibrary("capstone")]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CElf", pkgConfig: "libelf", providers: [.apt(["libelf-dev"])]),
        .target(name: "KVMUser", dependencies: ["CKVM"]),
        .target(name: "CDigest"),
        .target(name: "Trace", dependencies: ["CZstd", "CDigest"]),
        .target(name: "Kernel", dependencies: ["KVMUser", "CElf", "CHost"]),
        .target(name: "Record", dependencies: ["Kernel", "Trace", "KVMUser"]),
        .target(name: "Replay", dependencies: ["Kernel", "Trace", "KVMUser"]),
        .executableTarget(name: "detrec", dependencies: [
            "Record", "Replay", "Kernel", "Trace", "KVMUser",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "KVMUserTests", dependencies: ["KVMUser"]),
        .testTarget(name: "TraceTests", dependencies: ["Trace"]),
        .testTarget(name: "KernelTests", dependencies: ["Kernel", "KVMUser"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Trace", "Kernel", "KVMUser", "detrec"]),
        .testTarget(name: "GDBTests", dependencies: ["Replay", "Kernel", "KVMUser", "Trace", "detrec"]),
    ],
    swiftLanguageModes: [.v5]
)
