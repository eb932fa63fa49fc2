"""A small MCP server (official Python SDK, streamable HTTP, server-sent
events) whose one tool's description is what REPORT_DESCRIPTION says when it
starts: restarted with another, it is the same server changing a tool's
definition between two sessions (a "rug pull"). Usage: mcp_reports_server.py PORT."""

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("reports")


@server.tool(name="report.fetch", description=os.environ.get("REPORT_DESCRIPTION", "Fetches a daily report."))
def fetch(name: str) -> str:
    return f"report {name}: 42 rows"


if __name__ == "__main__":
    server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
