//! A custom service served over TCP: a warehouse inventory (receive stock, ship it, refuse a
//! shipment larger than what is on hand, count). The engine journals every command; the
//! network server validates each request against the command table before it may enter the
//! ring; a client speaks the wire protocol (`docs/PROTOCOL.md`) and decodes typed replies.
//!
//! `cargo run --example inventory_server` serves on a free loopback port, runs a client
//! against it, then stops both cleanly.

use keel::engine::MessageHeader;
use keel::net::{Client, NetConfig, Server};
use keel::service::{decode_response, CallError};
use keel::{Command, Config, Engine, Rejection, Service, Typed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::error::Error;

/// Stock moving in or out of the warehouse.
#[derive(Serialize, Deserialize)]
pub struct Movement {
    pub sku: u32,
    pub units: u32,
}
/// A stock query.
#[derive(Serialize, Deserialize)]
pub struct Count {
    pub sku: u32,
}

keel::commands! {
    /// The inventory's commands under their wire kinds (all at version 1).
    pub enum InventoryCommand {
        1 => Receive(Movement),
        2 => Ship(Movement),
        3 => Count(Count),
    }
}

/// Why a command is refused; the codes are what clients see.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum InventoryError {
    OutOfStock { on_hand: u32 },
    TooMuchStock,
}

impl Rejection for InventoryError {
    fn code(&self) -> u32 {
        match self {
            InventoryError::OutOfStock { .. } => 1,
            InventoryError::TooMuchStock => 2,
        }
    }
}

/// Units on hand by SKU.
#[derive(Default)]
struct Inventory {
    on_hand: BTreeMap<u32, u32>,
}

impl Service for Inventory {
    type Command = InventoryCommand;
    /// Units on hand after the command.
    type Reply<'a> = u32;
    type Rejection = InventoryError;
    type State = BTreeMap<u32, u32>;

    fn apply(
        &mut self,
        command: InventoryCommand,
        _: &MessageHeader,
    ) -> Result<u32, InventoryError> {
        use InventoryCommand as C;
        let sku = match &command {
            C::Receive(m) | C::Ship(m) => m.sku,
            C::Count(c) => c.sku,
        };
        let on_hand = self.on_hand.get(&sku).copied().unwrap_or(0);
        let after = match command {
            C::Receive(m) => on_hand
                .checked_add(m.units)
                .ok_or(InventoryError::TooMuchStock)?,
            C::Ship(m) => on_hand
                .checked_sub(m.units)
                .ok_or(InventoryError::OutOfStock { on_hand })?,
            C::Count(_) => return Ok(on_hand),
        };
        self.on_hand.insert(sku, after);
        Ok(after)
    }
    fn state(&self) -> &Self::State {
        &self.on_hand
    }
    fn restore(&mut self, state: Self::State) {
        self.on_hand = state;
    }
}

/// Sends `command` over `client` and decodes the inventory's answer.
fn request(
    client: &mut Client,
    command: &InventoryCommand,
) -> Result<Result<u32, CallError<InventoryError>>, Box<dyn Error>> {
    let mut payload = [0u8; 64];
    let len = command.encode_into(&mut payload)?;
    let reply = client.request(command.kind(), command.version(), &payload[..len])?;
    let response = reply
        .as_response(client.session_id())
        .ok_or("refused by the server")?;
    Ok(decode_response::<Inventory>(&response))
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("keel-inventory-{}", std::process::id()));
    let mut engine = Engine::start(
        Config::with_data_dir(&dir),
        Typed::new(Inventory::default()),
    )?;
    let net = NetConfig::listening_on("127.0.0.1:0".parse()?);
    // Engine and server are wired in one call; requests that do not decode as an
    // `InventoryCommand` are refused by the network thread, never journaled.
    let server = Server::start(net, &mut engine, InventoryCommand::validate)?;
    println!("serving on {}", server.local_addr());

    let mut client = Client::connect(server.local_addr(), None)?;
    let movement = |sku, units| Movement { sku, units };
    let receive = request(&mut client, &InventoryCommand::Receive(movement(7, 10)))?;
    let ship = request(&mut client, &InventoryCommand::Ship(movement(7, 4)))?;
    let too_many = request(&mut client, &InventoryCommand::Ship(movement(7, 9)))?;
    let count = request(&mut client, &InventoryCommand::Count(Count { sku: 7 }))?;
    assert_eq!((receive?, ship?, count?), (10, 6, 6));
    let short = InventoryError::OutOfStock { on_hand: 6 };
    assert!(matches!(too_many, Err(CallError::Rejected(e)) if e == short));
    // A frame that is no inventory command never reaches the business logic.
    let bogus = client.request(99, 1, &[])?;
    println!("unknown kind 99: {:?}", bogus.status);
    client.close();

    server.shutdown()?;
    let inventory = engine.shutdown()?.into_inner();
    println!("sku 7 on hand at shutdown: {}", inventory.on_hand[&7]);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
