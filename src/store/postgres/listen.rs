//! The listener: one connection of its own (outside the pool, where `LISTEN` would not
//! survive) that hears what every instance's transactions signal, and reconnects with a
//! pause when the connection drops.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{origin, Envelope, CHANNEL};
use crate::store::ClusterSignal;

/// Signals waiting for the router; past this, new ones are dropped (their work is in the
/// store, and the owners' polls find it).
pub(super) const SIGNAL_CAPACITY: usize = 4096;
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

pub(super) async fn listen_loop(
    config: tokio_postgres::Config,
    signals: mpsc::Sender<ClusterSignal>,
) {
    let mut was_down = false;
    loop {
        match listen_once(&config, &signals, &mut was_down).await {
            Ok(()) => return, // Nobody takes signals any more.
            Err(e) => {
                if !was_down {
                    log::warn!("store: listener connection lost ({e}); reconnecting");
                    was_down = true;
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    signals: &mpsc::Sender<ClusterSignal>,
    was_down: &mut bool,
) -> Result<(), String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    {
        // The connection must be polled for the LISTEN to complete.
        let listen = client.batch_execute(&statement);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                done = &mut listen => {
                    done.map_err(|e| e.to_string())?;
                    if std::mem::take(was_down) {
                        log::info!("store: listener connected again");
                    }
                    break;
                }
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("the server closed the connection".into()),
                },
            }
        }
    }
    while let Some(message) = messages.next().await {
        let AsyncMessage::Notification(note) = message.map_err(|e| e.to_string())? else {
            continue;
        };
        if signals.is_closed() {
            return Ok(());
        }
        match serde_json::from_str::<Envelope>(note.payload()) {
            Ok(envelope) if envelope.origin == origin() => {}
            Ok(envelope) => {
                let _ = signals.try_send(envelope.signal);
            }
            Err(e) => log::warn!("store: unreadable signal on {CHANNEL}: {e}"),
        }
    }
    Err("the server closed the connection".into())
}
