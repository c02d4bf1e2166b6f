import { useEffect, useState } from "preact/hooks";
import { api, Campaign, Me, Page } from "../api";
import { useLive } from "../live";

export function Campaigns(props: { me: Me }) {
  const [page, setPage] = useState<Page<Campaign> | null>(null);
  const [status, setStatus] = useState("");
  const load = () => {
    const query = status ? `?status=${status}&page_size=100` : "?page_size=100";
    api<Page<Campaign>>("GET", `/campaigns${query}`).then(setPage).catch(() => undefined);
  };
  useEffect(load, [status]);
  useLive("types=Campaign", load);
  return (
    <>
      <h1>Campaigns</h1>
      {props.me.may.includes("write") && <p><a href="/ui/campaigns/new">New campaign</a></p>}
      <label for="status">Status</label>{" "}
      <select id="status" value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
        {["", "draft", "scheduled", "running", "paused", "completed", "cancelled", "aborted"].map((s) => (
          <option key={s} value={s}>{s || "any"}</option>
        ))}
      </select>
      <table>
        <thead><tr><th>Name</th><th>Status</th><th>Firmware</th><th>Devices</th><th>Created</th></tr></thead>
        <tbody>
          {page?.items.map((c) => (
            <tr key={c.id}>
              <td><a href={`/ui/campaigns/${c.id}`}>{c.name}</a></td>
              <td><span class={`status ${c.status}`}>{c.status}</span></td>
              <td>{c.firmware.name} {c.firmware.version}</td>
              <td>{c.device_count}</td>
              <td>{new Date(c.created_at).toLocaleString()}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {page && <p class="muted">{page.total} campaigns</p>}
    </>
  );
}
