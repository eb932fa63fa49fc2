"""A real MCP server (official Python SDK, streamable HTTP) exposing the
orders_daily monitor's tools. Usage: mcp_server.py PORT [CALL_LOG]; each
tool call that reaches it appends the tool's name to CALL_LOG."""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("warehouse")
CALL_LOG = sys.argv[2] if len(sys.argv) > 2 else None


def reached(tool: str) -> None:
    if CALL_LOG:
        with open(CALL_LOG, "a") as log:
            log.write(tool + "\n")


@server.tool(name="warehouse.query")
def query(sql: str) -> str:
    """Runs a read-only query."""
    reached("warehouse.query")
    return f"ran: {sql}"


@server.tool(name="warehouse.drop_table")
def drop_table(table: str) -> str:
    """Drops a table (irreversible)."""
    reached("warehouse.drop_table")
    return f"dropped {table}"


@server.tool(name="docs.search")
def search(query: str) -> str:
    """Searches the runbooks; its index is down, so every call fails."""
    reached("docs.search")
    raise RuntimeError("the search index is unavailable")


@server.tool(name="shell.exec")
def shell(command: str) -> str:
    """Not something the monitor agent may use."""
    reached("shell.exec")
    return "should never run"


if __name__ == "__main__":
    server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]), json_response=True)
