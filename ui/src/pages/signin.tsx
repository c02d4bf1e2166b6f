import { useState } from "preact/hooks";
import { api, ApiError, Me, signIn, signOut } from "../api";

export function SignIn(props: { onSignedIn: () => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    signIn(value);
    try {
      await api<Me>("GET", "/me");
      props.onSignedIn();
    } catch (err) {
      signOut();
      setError(err instanceof ApiError ? `${err.message} (${err.code})` : String(err));
    }
  };
  return (
    <main class="signin">
      <h1>Sign in to ota</h1>
      <form onSubmit={submit}>
        <label for="token">API key or token</label>
        <input id="token" name="token" type="password" autocomplete="off" required
          value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
        <p class="muted">Kept for this tab only (session storage), sent as a bearer header.</p>
        <button type="submit">Sign in</button>
        {error && <p role="alert" class="error">{error}</p>}
      </form>
    </main>
  );
}
