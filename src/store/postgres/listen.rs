//! The listener: one connection of its own (outside the pool, where `LISTEN` would not
//! survive) that hears what every instance's transactions signal, and reconnects with a
//! pause when the connection drops.
//!
//! A store is open only once its listener listens: an instance that claimed work before
//! it could hear cancellations would send what a regulation purged meanwhile.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls};

use super::{origin, Envelope, CHANNEL};
use crate::store::ClusterSignal;

/// Signals waiting for the router. Past this, news of work is dropped (the work is in the
/// store, and the owners' polls find it); cancellations and pauses wait for room.
pub(super) const SIGNAL_CAPACITY: usize = 4096;
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Listens until nobody takes signals any more; `listening` hears once the first
/// `LISTEN` is in place.
pub(super) async fn listen_loop(
    config: tokio_postgres::Config,
    signals: mpsc::Sender<ClusterSignal>,
    listening: oneshot::Sender<()>,
) {
    let mut was_down = false;
    let mut listening = Some(listening);
    loop {
        match listen_once(&config, &signals, &mut was_down, &mut listening).await {
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
    listening: &mut Option<oneshot::Sender<()>>,
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
                        // What was signalled meanwhile is looked up instead.
                        if signals.send(ClusterSignal::Missed).await.is_err() {
                            return Ok(());
                        }
                    }
                    if let Some(listening) = listening.take() {
                        let _ = listening.send(());
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
            Ok(Envelope {
                signal: work @ ClusterSignal::Work(_),
                ..
            }) => {
                let _ = signals.try_send(work);
            }
            // Not to be lost: a purged delivery held in memory would be sent.
            Ok(envelope) => {
                if signals.send(envelope.signal).await.is_err() {
                    return Ok(());
                }
            }
            Err(e) => log::warn!("store: unreadable signal on {CHANNEL}: {e}"),
        }
    }
    Err("the server closed the connection".into())
}
