import { fetchEventSource } from "@microsoft/fetch-event-source";
import { useEffect, useState } from "preact/hooks";
import { token } from "./api";

interface Record {
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  global_seq: number;
  metadata: { [key: string]: string };
  recorded_at: string;
}

const SHOWN = 25;

/** The fleet's latest events, live: the stream from `from` (a global position) on. */
export function ActivityFeed(props: { from: number }) {
  const [events, setEvents] = useState<Record[]>([]);
  useEffect(() => {
    const stop = new AbortController();
    fetchEventSource("/api/v1/stream", {
      headers: { Authorization: `Bearer ${token() ?? ""}`, "Last-Event-ID": String(Math.max(props.from, 0)) },
      signal: stop.signal,
      openWhenHidden: true,
      onmessage: (message) => {
        if (!message.data) return;
        const record = JSON.parse(message.data) as Record;
        setEvents((seen) => [record, ...seen.filter((r) => r.global_seq !== record.global_seq)].slice(0, SHOWN));
      },
    }).catch(() => undefined);
    return () => stop.abort();
  }, [props.from]);
  const link = (r: Record) => {
    if (r.aggregate_type === "Campaign") return <a href={`/ui/campaigns/${r.aggregate_id}`}>campaign</a>;
    if (r.aggregate_type === "Firmware") return <a href={`/ui/firmware/${r.aggregate_id}`}>firmware</a>;
    return <a href={`/ui/devices/${encodeURIComponent(r.aggregate_id)}`}>{r.aggregate_id}</a>;
  };
  return (
    <ol class="feed" aria-label="Recent activity" data-testid="activity">
      {events.map((r) => (
        <li key={r.global_seq}>
          {new Date(r.recorded_at).toLocaleTimeString()} · <strong>{r.event_type}</strong> · {link(r)}
          {r.metadata.actor_id ? <span class="muted"> · {r.metadata.actor_kind}:{r.metadata.actor_id}</span> : ""}
        </li>
      ))}
    </ol>
  );
}
