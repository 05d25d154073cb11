extension GuestMemory {
    /// The guest-physical frame behind `va` (nil when unmapped or not yet
    /// backed): the key `changes(since:)` names a changed page by, so a
    /// caller can tell which virtual pages those are.
    public func physicalFrame(of va: UInt64) -> UInt64? { frame(of: va) }
}
