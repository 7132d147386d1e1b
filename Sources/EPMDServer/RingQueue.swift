/// A first-in first-out queue with amortised O(1) operations, for the loop's timer lists.
struct RingQueue<Element> {
    private var storage: [Element] = []
    private var head = 0

    var first: Element? { self.head < self.storage.count ? self.storage[self.head] : nil }

    var count: Int { self.storage.count - self.head }

    mutating func append(_ element: Element) { self.storage.append(element) }

    mutating func removeFirst() {
        guard self.head < self.storage.count else { return }
        self.head += 1
        if self.head == self.storage.count {
            self.storage.removeAll(keepingCapacity: true)
            self.head = 0
        } else if self.head > 4096, self.head * 2 > self.storage.count {
            self.storage.removeFirst(self.head)
            self.head = 0
        }
    }
}
