# The asyncio tutorial's GracefulServer (seed/graceful-shutdown.ru.md), kept as the
# yardstick lameduck's shutdown figures are compared against. Changes: the port
# comes from argv, the bound address is printed as `listening on ...` for the
# benchmark, and the Russian prints are dropped. Its logic, bugs included, is as
# published: a 1 s wait_for poll per client, decode() of every line.
import asyncio
import signal
import sys


class GracefulServer:
    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.server = None
        self.shutdown_event = asyncio.Event()
        self.active_connections = set()

    async def start(self):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.shutdown_event.set)
        self.server = await asyncio.start_server(self._handle_client, self.host, self.port)
        addr = self.server.sockets[0].getsockname()
        print(f"listening on {addr[0]}:{addr[1]}", flush=True)
        try:
            async with self.server:
                await self.shutdown_event.wait()
        finally:
            await self._shutdown()

    async def _handle_client(self, reader, writer):
        self.active_connections.add(writer)
        try:
            while not self.shutdown_event.is_set():
                try:
                    data = await asyncio.wait_for(reader.readline(), timeout=1.0)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    break
                message = data.decode().strip()
                writer.write(f"Echo: {message}\r\n".encode())
                await writer.drain()
        except ConnectionResetError:
            pass
        finally:
            self.active_connections.discard(writer)
            writer.close()
            try:
                await writer.wait_closed()
            except Exception:
                pass

    async def _shutdown(self):
        if self.server:
            self.server.close()
            await self.server.wait_closed()
        for writer in list(self.active_connections):
            try:
                writer.write(b"Server is shutting down. Goodbye!\r\n")
                await writer.drain()
            except Exception:
                pass
        if self.active_connections:
            for _ in range(30):
                if not self.active_connections:
                    break
                await asyncio.sleep(1)
            else:
                for writer in list(self.active_connections):
                    writer.close()


if __name__ == "__main__":
    asyncio.run(GracefulServer("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0).start())
