/// An intrusive doubly linked list of connections in deadline order: O(1) append, removal and
/// earliest lookup, and no entry outlives its connection.
struct TimedList {
    private(set) var head: EPMDConnection?
    private var tail: EPMDConnection?

    var isEmpty: Bool { self.head == nil }

    /// Appends a connection whose deadline is not earlier than any in the list.
    mutating func append(_ connection: EPMDConnection) {
        guard !connection.isTimed else { return }
        connection.isTimed = true
        connection.timedPrevious = self.tail
        connection.timedNext = nil
        if let tail = self.tail { tail.timedNext = connection } else { self.head = connection }
        self.tail = connection
    }

    /// Inserts a connection at its deadline's place (adopted connections: their deadlines are older).
    mutating func insert(_ connection: EPMDConnection) {
        guard !connection.isTimed else { return }
        var next = self.head
        while let candidate = next, candidate.deadline <= connection.deadline { next = candidate.timedNext }
        guard let before = next else {
            self.append(connection)
            return
        }
        connection.isTimed = true
        connection.timedNext = before
        connection.timedPrevious = before.timedPrevious
        if let previous = before.timedPrevious { previous.timedNext = connection } else { self.head = connection }
        before.timedPrevious = connection
    }

    mutating func remove(_ connection: EPMDConnection) {
        guard connection.isTimed else { return }
        connection.isTimed = false
        let previous = connection.timedPrevious
        let next = connection.timedNext
        if let previous { previous.timedNext = next } else { self.head = next }
        if let next { next.timedPrevious = previous } else { self.tail = previous }
        connection.timedNext = nil
        connection.timedPrevious = nil
    }
}
