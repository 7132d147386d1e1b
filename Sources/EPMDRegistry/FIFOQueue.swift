/// A minimal first-in first-out queue: amortised O(1) append and pop, no dependency.
struct FIFOQueue<Element> {
    private var storage: [Element]
    private var head = 0

    init(_ elements: [Element] = []) { self.storage = elements }

    var count: Int { self.storage.count - self.head }

    var elements: ArraySlice<Element> { self.storage[self.head...] }

    mutating func append(_ element: Element) { self.storage.append(element) }

    mutating func popFirst() -> Element? {
        guard self.head < self.storage.count else { return nil }
        let element = self.storage[self.head]
        self.head += 1
        if self.head > 1024, self.head * 2 > self.storage.count {
            self.storage.removeFirst(self.head)
            self.head = 0
        }
        return element
    }
}

extension FIFOQueue: Sendable where Element: Sendable {}
