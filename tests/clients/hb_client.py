#!/usr/bin/env python3
"""AMQP client used by tests/live_rabbitmq.rs to make heartbeat gaps on purpose.

Usage: hb_client.py MODE [HEARTBEAT_S] [SLEEP_S] [NAME]

  serve  connect, then keep servicing heartbeats (process_data_events) until
         the connection dies; the test SIGSTOPs and SIGCONTs this process.
  sleep  connect, then time.sleep(SLEEP_S) without servicing heartbeats
         (a blocking call that starves pika's I/O loop), then notice the
         dead connection and exit.
  spin   connect, consume one message it publishes to itself, and spin the
         CPU in the consumer callback for SLEEP_S seconds (pure Python, no
         system calls): pika's I/O loop cannot run meanwhile.
  lock   connect, start a thread that takes a lock and sleeps holding it,
         then block acquiring that lock in the main thread until killed.
  fifo   connect, then block reading the FIFO whose path is in $HBSCOPE_FIFO
         (opened read-write, so the read waits for data nobody writes) until
         killed.
  fork   connect, wait for SIGUSR1, then fork a child that inherits the
         connection's socket and sleeps; prints "forked CHILD_PID" and sleeps
         too (the test SIGKILLs this process: the socket lives on in the
         child, so the silence goes on after its owner exited).

Prints "ready PID LOCAL_PORT" once connected, "closed: REASON" at the end.
The connection_name is "NAME:PID:MODE" (NAME defaults to hbscope-test) so the
test can find it.
Talks to RabbitMQ at 127.0.0.1:5672 (or the port in $HBSCOPE_AMQP_PORT) as
guest/guest.
"""
import os
import sys
import time

import pika


def main():
    mode = sys.argv[1]
    heartbeat = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    sleep_s = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    name = sys.argv[4] if len(sys.argv) > 4 else "hbscope-test"
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=int(os.environ.get("HBSCOPE_AMQP_PORT", "5672")),
        heartbeat=heartbeat,
        blocked_connection_timeout=None,
        credentials=pika.PlainCredentials("guest", "guest"),
        client_properties={"connection_name": f"{name}:{os.getpid()}:{mode}"},
    )
    conn = pika.BlockingConnection(params)
    try:
        port = conn._impl._transport._sock.getsockname()[1]  # pylint: disable=protected-access
    except Exception:  # noqa: BLE001 - best effort, only for the log
        port = 0
    print(f"ready {os.getpid()} {port}", flush=True)
    try:
        if mode == "serve":
            while True:
                conn.process_data_events(time_limit=0.2)
        elif mode == "sleep":
            time.sleep(sleep_s)
            conn.process_data_events(time_limit=1)
            conn.close()
            print("closed: still open after the sleep", flush=True)
            return
        elif mode == "spin":
            ch = conn.channel()
            queue = ch.queue_declare(queue="", exclusive=True).method.queue

            def on_message(_ch, _method, _props, _body):
                print("spinning", flush=True)
                end = time.monotonic() + sleep_s
                n = 0
                while time.monotonic() < end:
                    n += 1
                print(f"spun {n}", flush=True)

            ch.basic_consume(queue=queue, on_message_callback=on_message, auto_ack=True)
            ch.basic_publish(exchange="", routing_key=queue, body=b"spin")
            while True:
                conn.process_data_events(time_limit=0.2)
        elif mode == "lock":
            import threading

            lock = threading.Lock()
            held = threading.Event()

            def holder():
                with lock:
                    held.set()
                    time.sleep(3600)

            threading.Thread(target=holder, name="holder", daemon=True).start()
            held.wait()
            print("waiting for the lock", flush=True)
            lock.acquire()
        elif mode == "fifo":
            fd = os.open(os.environ["HBSCOPE_FIFO"], os.O_RDWR)
            print("reading the fifo", flush=True)
            os.read(fd, 1)
        elif mode == "fork":
            import signal

            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            signal.sigwait({signal.SIGUSR1})
            child = os.fork()
            if child == 0:
                time.sleep(3600)
                os._exit(0)  # pylint: disable=protected-access
            print(f"forked {child}", flush=True)
            time.sleep(3600)
        else:
            raise SystemExit(f"unknown mode {mode}")
    except Exception as e:  # noqa: BLE001 - the broker cut us, as intended
        print(f"closed: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
