import EPMDApp

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

exit(EPMDApplication.main(arguments: CommandLine.arguments, environment: ProcessInfoEnvironment.current))
