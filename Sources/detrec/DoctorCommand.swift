import ArgumentParser
import Glibc
import KVMUser

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Report what this host's KVM can do for detrec.")

    func run() throws {
        let device: KVMDevice
        do { device = try KVMDevice() } catch { fail("\(error)") }
        let caps = HostCapabilities.probe(device: device)
        print("KVM backend: \(caps.backend.rawValue)")
        print("sync regs: \(caps.syncRegs ? "yes" : "NO (required)")")
        print("XCRs: \(caps.xcrs ? "yes" : "NO (required)")")
        print("PMU branch counter: \(caps.hasBranchCounter ? "yes" : "no")")
        do {
            let model = try CPUModel.portable(device: device)
            let table = try CPUIDTable.forRecording(device: device, model: model)
            print("default CPU model: \(model.rawValue) (XCR0 0x\(String(table.xcr0, radix: 16)), \(table.leaves.count) CPUID leaves)")
            let probe = try GuestCPUProbe.measure(device: device)
            print("guest CPUID: \(probe.cpuidVirtualized ? "virtualized by KVM" : "NOT virtualized (the guest sees the host's)"); detrec answers it from the trace's CPU model either way (patched cpuid)")
            print("guest XCR0: \(probe.xcr0Enforced ? "enforced" : "NOT enforced: the guest runs with the host's 0x\(String(probe.effectiveXCR0, radix: 16))")")
            let host = try CPUIDTable.forRecording(device: device, model: .host)
            print("--cpu host: XCR0 0x\(String(host.xcr0, radix: 16)), \(host.leaves.count) CPUID leaves (RDRAND, RDSEED, PKU and AMX hidden)")
        } catch { print("CPUID: \(error)") }
        // What a preemption checkpoint costs here (docs/preemption.md).
        do {
            let check = try CheckpointProbe.checkDirtyLog(device: device)
            print("preemption checkpoints: \(check.works ? check.summary : "full copy of every writable page (\(check.summary))")")
            if check.works {
                let cbw = try CheckpointProbe.checkCopyBeforeWrite(device: device)
                print("large checkpoints (\(CheckpointProbe.largeCheckpointPages)+ pages changed): \(cbw.summary)")
            }
        } catch { print("preemption checkpoints: full copy (the dirty log check failed: \(error))") }
        for note in caps.notes { print("note: \(note)") }
    }
}
