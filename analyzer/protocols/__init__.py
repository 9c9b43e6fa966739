"""Protocol clients the probes share: connections, DNS, HTTP and its authentication, mail
dialogues, Exchange's encodings.

- :mod:`.net`: connect, TLS, STARTTLS, transcripts, bounded line reading; :mod:`.netns`:
  running from another network namespace (``--netns``);
- :mod:`.resolve`: DNS questions through the run's resolver; :mod:`.endpoints`: which
  host:port endpoints a target has;
- :mod:`.http`: bounded HTTP(S) with the run's trust; :mod:`.httpauth`: Basic, Bearer, NTLM
  and Negotiate; :mod:`.rawhttp`: HTTP over a socket we hold (RPC over HTTP);
- :mod:`.tlsprobe`: one TLS handshake, observed; :mod:`.mailproto` and :mod:`.mailclient`:
  SMTP, IMAP and POP3 dialogues; :mod:`.login`: the mail logins the probes share;
- :mod:`.exchange`: what the Exchange probes share (URLs, authentication, errors);
  :mod:`.wbxml` (ActiveSync), :mod:`.rts` (MAPI/RPC over HTTP), and the EWS XML where present.

They use the core's vocabulary (errors, model, facts, findings) and nothing above it: no
probe, no operation, no lab.
"""
