import ArgumentParser
import Foundation
import Warren
import WarrenAMQP
import WarrenContract

/// A failure the operator can act on: its message says what to do, its kind picks the exit code
/// (documented in `warren --help` and the README), so scripts can tell the cases apart.
struct CLIFailure: Error {
    enum Kind: Int32 {
        case failed = 1
        case usage = 2
        case unreachable = 3
        case timeout = 4
        /// Part of a check could not be done (`flow`: the dead-letter queues could not be
        /// read), so the answer is not known: never reported as a success.
        case unknown = 5
    }

    let kind: Kind
    let message: String

    init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// What an error from the layers below means for the person at the terminal.
    static func from(_ error: any Error) -> CLIFailure {
        switch error {
        case let failure as CLIFailure:
            return failure
        case let error as AMQPError:
            return from(error)
        case let error as ServiceError:
            return from(error)
        default:
            return CLIFailure(.failed, Terminal.escape("\(error)"))
        }
    }

    // Text from the broker or a service (a close reason, an error message) is escaped where it
    // goes in: on one line with ours, a line break in it could forge a line of our own.
    private static func from(_ error: AMQPError) -> CLIFailure {
        switch error {
        case .invalidURL:
            return CLIFailure(.usage, "\(error); expected amqp://user:password@host:port/vhost in --url or AMQP_URL")
        case .connectionRefused(let host, let port, let reason):
            return CLIFailure(
                .unreachable,
                "cannot reach the broker at \(host):\(port) (\(Terminal.escape(reason))): is it running? `make run` starts one; --url or AMQP_URL points elsewhere")
        case .authenticationFailed(let user, let vhost, _):
            return CLIFailure(
                .unreachable,
                "the broker refused user '\(user)' on vhost '\(vhost)': check the user, password and vhost in --url or AMQP_URL")
        case .connectionLost, .connectionClosed, .timedOut, .closed:
            return CLIFailure(.unreachable, "\(Terminal.escape("\(error)")): the broker went away; run the command again once it is back")
        case .invalidArgument(let detail):
            return CLIFailure(.usage, detail)
        case .channelClosed(let code, let text) where code == 403:
            return CLIFailure(.failed, "the broker refused access: \(Terminal.escape(text)); check the user's permissions on the vhost")
        default:
            return CLIFailure(.failed, Terminal.escape("\(error)"))
        }
    }

    private static func from(_ error: ServiceError) -> CLIFailure {
        switch error.code {
        case .timeout: CLIFailure(.timeout, Terminal.escape(error.message))
        case .invalid: CLIFailure(.usage, Terminal.escape(error.message))
        default: CLIFailure(.failed, "\(error.code.rawValue): \(Terminal.escape(error.message))")
        }
    }
}

/// Runs a command's body, turning every failure into its message on stderr and its exit code.
/// Argument parser errors pass through, so usage errors keep the parser's exit code (2) and help.
func reportingFailures(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch let error as CleanExit {
        throw error
    } catch {
        let failure = CLIFailure.from(error)
        Terminal.error(failure.message)
        throw ExitCode(failure.kind.rawValue)
    }
}
