// Exact strings the e2e tests expect from hubwire-node.
//
// hubwire follows ASP.NET Core SignalR. Where the original hubwire contract
// (the brief the server is built from) and ASP.NET Core differ, the tests
// assert what ASP.NET Core does, and the contract's value is kept here as
// CONTRACT_* for reference. Sources (dotnet/aspnetcore):
//   src/SignalR/server/Core/src/Internal/DefaultHubDispatcher.cs
//   src/SignalR/server/Core/src/HubConnectionHandler.cs
//   src/SignalR/server/Core/src/HubConnectionContext.cs
//   src/SignalR/common/Protocols.Json/src/Protocol/JsonHubProtocol.cs

export const RS = '\x1e';

// --- Hub method errors (Completion.error, surfaced by the client as Error.message) ---

/** HubException thrown by a hub method (ErrorMessageHelper appends "HubException: <msg>"). */
export const failError = (message, target = 'Fail') =>
  `An unexpected error occurred invoking '${target}' on the server. HubException: ${message}`;

/**
 * Invoking a method that does not exist. hubwire sends the text of ASP.NET Core's
 * DefaultHubDispatcher ("Unknown hub method '<name>'"), as the hubwire contract
 * (MISSION.md) names it. Current ASP.NET Core, whose parser binds arguments before
 * dispatch, sends instead "Failed to invoke '<name>' due to an error on the server.
 * HubException: Method does not exist." (see docs/decisions.md).
 */
export const unknownMethodError = (target) => `Unknown hub method '${target}'`;
/** Wrong argument count / binding failure (InvalidDataException is not appended without detailed errors). */
export const bindingError = (target) => `Failed to invoke '${target}' due to an error on the server.`;

export const streamingWithInvokeError = (target) =>
  `The client attempted to invoke the streaming '${target}' method with a non-streaming invocation.`;

export const nonStreamingWithStreamError = (target) =>
  `The client attempted to invoke the non-streaming '${target}' method with a streaming invocation.`;

// --- Handshake responses (exact records, without the trailing \x1e) ---

export const HANDSHAKE_OK = '{}';
export const handshakeUnsupportedProtocol = (p) => JSON.stringify({ error: `The protocol '${p}' is not supported.` });
export const HANDSHAKE_UNEXPECTED = JSON.stringify({ error: 'An unexpected error occurred during connection handshake.' });
export const HANDSHAKE_CANCELED = JSON.stringify({ error: 'Handshake was canceled.' });

// --- Close messages (exact records, without the trailing \x1e) ---

/**
 * Sent after a malformed / invalid / oversized message.
 * ASP.NET Core: RunHubAsync catches the InvalidDataException and calls
 * SendCloseAsync(connection, ex, connection.AllowReconnect); AllowReconnect is
 * true unless the connection was explicitly Abort()ed, and JsonHubProtocol
 * writes "allowReconnect":true after "error". Real ASP.NET Core servers are
 * observed sending exactly this record.
 */
export const CLOSE_WITH_ERROR = '{"type":7,"error":"Connection closed with an error.","allowReconnect":true}';
/** What the hubwire brief specified instead (allowReconnect absent). */
export const CONTRACT_CLOSE_WITH_ERROR = '{"type":7,"error":"Connection closed with an error."}';

/**
 * Sent when nothing was received from the client for ClientTimeoutInterval.
 * ASP.NET Core (.NET 8+): CheckClientTimeout() sets
 *   CloseException ??= new OperationCanceledException("Client hasn't sent a message/ping within the configured ClientTimeoutInterval.")
 * and calls AbortAllowReconnect(); RunHubAsync then sends
 * SendCloseAsync(CloseException, allowReconnect: true). OperationCanceledException
 * is not a HubException, so only the generic text goes on the wire — the same
 * record as for an invalid message. (.NET 6/7 sent {"type":7,"allowReconnect":true}.)
 * Note: ASP.NET Core arms the client timeout only after the client's first
 * Ping (DefaultHubDispatcher: `case PingMessage: connection.StartClientTimeout()`);
 * the official client pings right after the handshake, and so does the test.
 */
export const CLOSE_CLIENT_TIMEOUT = CLOSE_WITH_ERROR;
/** What the hubwire brief specified instead. */
export const CONTRACT_CLOSE_CLIENT_TIMEOUT =
  '{"type":7,"error":"Server timeout elapsed without receiving a message from the client."}';

export const PING = '{"type":6}';
