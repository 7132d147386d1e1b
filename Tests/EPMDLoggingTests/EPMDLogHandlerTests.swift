import EPMDLogging
import EPMDPosix
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// C epmd's log lines through swift-log: the format, the threshold per `-d`, the journal's priorities.
@Suite struct EPMDLogHandlerTests {
    /// A pipe for the handler to write to; `read()` takes what it wrote (the handler writes whole lines).
    final class Capture {
        let readEnd: Int32
        let writeEnd: Int32

        init() throws {
            var fds: [Int32] = [-1, -1]
            try #require(pipe(&fds) == 0)
            (self.readEnd, self.writeEnd) = (fds[0], fds[1])
            try #require(fcntl(self.readEnd, F_SETFL, O_NONBLOCK) == 0)
        }

        deinit {
            close(self.readEnd)
            close(self.writeEnd)
        }

        /// Everything written so far.
        func read() -> String {
            var result: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { Glibc.read(self.readEnd, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                result += buffer[0..<count]
            }
            return String(decoding: result, as: UTF8.self)
        }

        func logger(sink: EPMDLogHandler.Sink, debugLevel: Int) -> Logger {
            let fd = self.writeEnd
            return Logger(label: "test") { _ in EPMDLogHandler(sink: sink, debugLevel: debugLevel, descriptor: fd) }
        }
    }

    @Test("a stderr line is C epmd's dbg_printf line: 'epmd: <ctime>: <message>\\r\\n'")
    func standardErrorLine() throws {
        #expect(
            EPMDLogHandler.line(
                "epmd running - daemon = 0",
                level: .info,
                sink: .standardError,
                time: "Wed Dec  2 05:17:57 2026"
            )
                == Array("epmd: Wed Dec  2 05:17:57 2026: epmd running - daemon = 0\r\n".utf8)
        )
        let capture = try Capture()
        capture.logger(sink: .standardError, debugLevel: 0).notice("there is already a epmd running at port 4369")
        let line = capture.read()
        // "epmd: " + ctime without its newline ("Www Mmm dd hh:mm:ss yyyy", 24 characters) + ": " + message.
        #expect(line.hasPrefix("epmd: "))
        #expect(line.hasSuffix(": there is already a epmd running at port 4369\r\n"))
        let stamp = line.dropFirst(6).prefix(24)
        #expect(stamp.count == 24)
        #expect(stamp.split(separator: " ", omittingEmptySubsequences: true).count == 5, "\(stamp)")
        #expect(line.utf8.count == 6 + 24 + 2 + "there is already a epmd running at port 4369".utf8.count + 2)
    }

    @Test("a journal line carries the level's syslog priority and no time stamp: '<N>epmd: <message>\\n'")
    func journalLine() throws {
        #expect(
            EPMDLogHandler.line("closed", level: .notice, sink: .journal, time: "unused")
                == Array("<5>epmd: closed\n".utf8)
        )
        let capture = try Capture()
        let logger = capture.logger(sink: .journal, debugLevel: 3)
        logger.trace("t")
        logger.debug("d")
        logger.info("i")
        logger.notice("n")
        logger.warning("w")
        logger.error("e")
        logger.critical("c")
        #expect(
            capture.read()
                == "<7>epmd: t\n<7>epmd: d\n<6>epmd: i\n<5>epmd: n\n<4>epmd: w\n<3>epmd: e\n<2>epmd: c\n"
        )
        #expect(EPMDLogHandler.line("m", level: .error, sink: .syslog, time: "unused") == Array("epmd: m".utf8))
    }

    @Test("journal priorities: debug 7, info 6, notice 5, warning 4, error 3, critical 2; syslog: always 3, as C")
    func priorities() {
        let expected: [(Logger.Level, Int32)] = [
            (.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
        ]
        for (level, priority) in expected {
            #expect(EPMDLogHandler.priority(level) == priority, "\(level)")
        }
        // syslog keeps C epmd's single priority.
        #expect(EPMDLogHandler.syslogPriority == 3)
    }

    @Test(
        "each -d lets one more level through: always notice and above, then info, debug, trace",
        arguments: [(0, Logger.Level.notice), (1, .info), (2, .debug), (3, .trace), (4, .trace), (-1, .notice)]
    )
    func threshold(debugLevel: Int, expected: Logger.Level) throws {
        #expect(EPMDLogHandler.threshold(debugLevel: debugLevel) == expected)
        let capture = try Capture()
        let logger = capture.logger(sink: .journal, debugLevel: debugLevel)
        #expect(logger.logLevel == expected)
        for level in Logger.Level.allCases { logger.log(level: level, "\(level)") }
        let printed = capture.read().split(separator: "\n").map { String($0.drop { $0 != " " }.dropFirst()) }
        #expect(printed == Logger.Level.allCases.filter { $0 >= expected }.map { "\($0)" })
    }

    @Test("metadata is not printed: the message text is the compatible surface")
    func metadataNotPrinted() throws {
        let capture = try Capture()
        var logger = capture.logger(sink: .journal, debugLevel: 0)
        logger[metadataKey: "connection.id"] = "7"
        logger.notice("closed", metadata: ["reason": "timeout"])
        #expect(capture.read() == "<5>epmd: closed\n")
    }

    @Test("JOURNAL_STREAM selects the journal only when it names the stderr descriptor's device and inode")
    func journalStream() throws {
        let capture = try Capture()
        let identity = try #require(System.fileIdentity(capture.writeEnd))
        let matching = "\(identity.device):\(identity.inode)"
        #expect(
            EPMDLogHandler.standardErrorSink(environment: ["JOURNAL_STREAM": matching], descriptor: capture.writeEnd)
                == .journal
        )
        // The read end of the same pipe is the same inode: systemd's check is by identity, not by descriptor.
        #expect(
            EPMDLogHandler.standardErrorSink(environment: ["JOURNAL_STREAM": matching], descriptor: capture.readEnd)
                == .journal
        )
        let other = try Capture()
        #expect(
            EPMDLogHandler.standardErrorSink(environment: ["JOURNAL_STREAM": matching], descriptor: other.writeEnd)
                == .standardError
        )
        for value in [
            "", "garbage", "\(identity.device):", ":\(identity.inode)", "\(identity.device):\(identity.inode + 1)",
        ] {
            #expect(
                EPMDLogHandler.standardErrorSink(environment: ["JOURNAL_STREAM": value], descriptor: capture.writeEnd)
                    == .standardError,
                "\(value)"
            )
        }
        #expect(EPMDLogHandler.standardErrorSink(environment: [:], descriptor: capture.writeEnd) == .standardError)
        // A closed descriptor has no identity: never the journal.
        #expect(
            EPMDLogHandler.standardErrorSink(environment: ["JOURNAL_STREAM": matching], descriptor: -1)
                == .standardError
        )
    }

    @Test("a regular file as stderr: matched by its own device and inode")
    func journalStreamFile() throws {
        var template = Array("/tmp/epmd-log-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        try #require(fd >= 0)
        defer {
            close(fd)
            unlink(template)
        }
        let identity = try #require(System.fileIdentity(fd))
        #expect(
            EPMDLogHandler.standardErrorSink(
                environment: ["JOURNAL_STREAM": "\(identity.device):\(identity.inode)"],
                descriptor: fd
            ) == .journal
        )
        let logger = Logger(label: "test") { _ in EPMDLogHandler(sink: .standardError, debugLevel: 1, descriptor: fd) }
        logger.info("epmd running - daemon = 0")
        logger.debug("not printed at -d")
        var size = stat()
        try #require(fstat(fd, &size) == 0)
        #expect(size.st_size == off_t("epmd: Wed Dec  2 05:17:57 2026: epmd running - daemon = 0\r\n".utf8.count))
    }
}
