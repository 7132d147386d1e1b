import EPMDRegistry
import Foundation
import GatewayHTTP
import Testing

/// The status page is one self-contained document: nothing loaded from another host, no markup built
/// from strings, small.
@Suite struct StatusPageUnitTests {
    static let text = String(decoding: StatusPage.html, as: UTF8.self)

    /// Every value of `attribute="..."` (or `'...'`, or unquoted) in the page.
    static func values(of attribute: String) -> [String] {
        var found: [String] = []
        var rest = Self.text[...]
        while let range = rest.range(of: attribute + "=", options: .caseInsensitive) {
            let preceding = rest[..<range.lowerBound].last
            rest = rest[range.upperBound...]
            guard preceding.map({ $0 == " " || $0 == "\n" || $0 == "\t" }) == true else { continue }
            if let quote = rest.first, quote == "\"" || quote == "'" {
                let value = rest.dropFirst().prefix { $0 != quote }
                found.append(String(value))
            } else {
                found.append(String(rest.prefix { !$0.isWhitespace && $0 != ">" }))
            }
        }
        return found
    }

    @Test("a small HTML5 document in UTF-8, with the ids the browser test relies on")
    func shape() {
        #expect(StatusPage.html.count < 15 * 1024, "\(StatusPage.html.count) bytes")
        #expect(Array(Self.text.utf8) == StatusPage.html, "not valid UTF-8")
        #expect(Self.text.hasPrefix("<!doctype html>"))
        #expect(Self.text.contains("<meta charset=\"utf-8\">"))
        for id in ["nodes", "events", "state", "generation"] {
            #expect(Self.text.contains("id=\"\(id)\""), "no #\(id)")
        }
        #expect(Self.text.contains("setAttribute(\"data-node\""))
        #expect(Self.text.contains("prefers-color-scheme: dark"))
        #expect(Self.text.contains("</html>"))
    }

    @Test("self-contained: no src, no external href, no stylesheet link, no @import or url()")
    func selfContained() {
        let lower = Self.text.lowercased()
        for banned in ["http://", "https://", "@import", "url(", "<link rel=\"stylesheet\"", "<iframe", "<object"] {
            #expect(!lower.contains(banned), "the page contains \(banned)")
        }
        #expect(Self.values(of: "src").isEmpty, "src attributes: \(Self.values(of: "src"))")
        let hrefs = Self.values(of: "href")
        #expect(!hrefs.isEmpty)
        for href in hrefs {
            // Relative to the gateway (`v1/nodes`) or inline (`data:`): never another host.
            let local = href == "data:," || (!href.contains(":") && !href.hasPrefix("//") && !href.hasPrefix("\\"))
            #expect(local, "href=\(href)")
        }
    }

    @Test("live from the relative v1/events stream; node data only through textContent and attributes")
    func script() {
        #expect(Self.text.contains("new EventSource(\"v1/events\")"))
        for event in ["reset", "registered", "unregistered"] {
            #expect(Self.text.contains("listen(es, \"\(event)\""), "no listener for \(event)")
        }
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            #expect(!Self.text.contains(sink), "the page uses \(sink)")
        }
        #expect(Self.text.contains("textContent"))
        // One inline script and one inline style, nothing else executable or loaded.
        #expect(Self.text.components(separatedBy: "<script").count == 2)
        #expect(Self.text.components(separatedBy: "<style").count == 2)
    }

    @Test("GET and HEAD / serve the page as uncached HTML")
    func served() {
        let router = HTTPRouter(
            registry: NodeRegistry(clock: { 1_795_411_787.25 }),
            build: .init(version: "0.1.0", libmicrohttpd: "0.9.75")
        )
        let page = router.respond(to: HTTPRequest(method: "GET", path: "/"))
        #expect(page.status == 200)
        #expect(page.header("Content-Type") == "text/html; charset=utf-8")
        #expect(page.header("Cache-Control") == "no-cache")
        #expect(page.body == StatusPage.html)
        #expect(router.respond(to: HTTPRequest(method: "HEAD", path: "/")).status == 200)
        #expect(router.respond(to: HTTPRequest(method: "POST", path: "/")).status == 405)
    }
}
