// Live changes from GET /api/v1/stream (server-sent events): the library sends
// the bearer header, which EventSource cannot, and resumes with Last-Event-ID
// after a drop, so the server replays what was missed.

import { fetchEventSource } from "@microsoft/fetch-event-source";
import { useEffect } from "preact/hooks";
import { token } from "./api";

/** Calls `changed` (at most every 300 ms, and once more after the last event) while mounted. */
export function useLive(query: string, changed: () => void) {
  useEffect(() => {
    const stop = new AbortController();
    let timer: number | undefined;
    let last = 0;
    const soon = () => {
      // Read models follow the stream by milliseconds: refetch now and once more after it settles.
      const now = Date.now();
      if (now - last > 300) {
        last = now;
        changed();
      }
      clearTimeout(timer);
      timer = window.setTimeout(changed, 500);
    };
    fetchEventSource(`/api/v1/stream?${query}`, {
      headers: { Authorization: `Bearer ${token() ?? ""}` },
      signal: stop.signal,
      openWhenHidden: true,
      onmessage: soon,
    }).catch(() => undefined);
    return () => {
      stop.abort();
      clearTimeout(timer);
    };
  }, [query]);
}
