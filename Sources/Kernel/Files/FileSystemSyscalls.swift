/// Calls about files that start-up code and tools make and the host
/// performs as they are: extended attributes, flushing to disk, and
/// mknod (FIFOs, sockets and regular files; device nodes need a privilege
/// the host decides on). Results, and what the get/list calls fill in,
/// come from the trace on replay.
enum FileSystemSyscalls {
    static func register(_ t: inout SyscallTable) {
        // Names are NUL-terminated strings (XATTR_NAME_MAX 255, checked by the host).
        t.add(SYS.getxattr, passthrough(.path, .path, .outFilled(sizeArg: 3), .value))
        t.add(SYS.lgetxattr, passthrough(.path, .path, .outFilled(sizeArg: 3), .value))
        t.add(SYS.fgetxattr, passthrough(.fd, .path, .outFilled(sizeArg: 3), .value))
        t.add(SYS.listxattr, passthrough(.path, .outFilled(sizeArg: 2), .value))
        t.add(SYS.llistxattr, passthrough(.path, .outFilled(sizeArg: 2), .value))
        t.add(SYS.flistxattr, passthrough(.fd, .outFilled(sizeArg: 2), .value))
        t.add(SYS.setxattr, passthrough(.path, .path, .inputSized(sizeArg: 3), .value, .value))
        t.add(SYS.lsetxattr, passthrough(.path, .path, .inputSized(sizeArg: 3), .value, .value))
        t.add(SYS.fsetxattr, passthrough(.fd, .path, .inputSized(sizeArg: 3), .value, .value))
        t.add(SYS.removexattr, passthrough(.path, .path))
        t.add(SYS.lremovexattr, passthrough(.path, .path))
        t.add(SYS.fremovexattr, passthrough(.fd, .path))
        t.add(SYS.sync, passthrough())
        t.add(SYS.syncfs, passthrough(.fd))
        t.add(SYS.sync_file_range, passthrough(.fd, .value, .value, .value))
    }
}
