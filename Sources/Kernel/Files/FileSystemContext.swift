/// What Linux keeps in a task's fs_struct: the working directory and the
/// umask (the root is always the host's: `ChangeRoot`). A reference, so
/// processes made by clone(CLONE_FS) share it, as LeakSanitizer's tracer
/// shares it with the process it stops: a chdir or umask by one is the
/// other's too. fork or clone without CLONE_FS, and unshare(CLONE_FS),
/// give the process a copy; exec keeps it.
public final class FileSystemContext {
    /// The working directory, against which relative paths resolve.
    public var cwd: WorkingDirectory
    /// The file mode creation mask.
    public var umask: UInt32

    public init(cwd: WorkingDirectory, umask: UInt32) {
        self.cwd = cwd
        self.umask = umask
    }

    /// A copy for a process that no longer shares this one (copy_fs_struct).
    func copy() -> FileSystemContext { FileSystemContext(cwd: cwd, umask: umask) }
}

/// The descriptor table as Linux's files_struct: a reference, shared by
/// the processes clone(CLONE_FILES) made, so a descriptor one of them opens
/// or closes is opened or closed for all. fork or clone without
/// CLONE_FILES, unshare(CLONE_FILES), exec and close_range's
/// CLOSE_RANGE_UNSHARE give the process a copy (the open files themselves
/// are shared by the copies, as dup_fd shares them). A process that ends
/// lets go of its reference: the descriptors close with the last one.
public final class SharedFileTable {
    public var table: FileTable

    public init(_ table: FileTable = FileTable()) { self.table = table }
}
