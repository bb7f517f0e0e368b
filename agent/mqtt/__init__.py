"""MQTT delivery to the HR backend: the contract, the connection, the delivery worker, commands."""

from agent.mqtt.commands import CommandFailed, Handler
from agent.mqtt.connection import MqttConnection
from agent.mqtt.contract import Contract, ContractViolation, Topics
from agent.mqtt.delivery import DeliveryStatus, DeliveryWorker
from agent.mqtt.options import BrokerAddress, MqttOptions
from agent.mqtt.status import DeviceStatus, GatewayIdentity, next_boot_counter

__all__ = [
    "BrokerAddress",
    "CommandFailed",
    "Contract",
    "ContractViolation",
    "DeliveryStatus",
    "DeliveryWorker",
    "DeviceStatus",
    "GatewayIdentity",
    "Handler",
    "MqttConnection",
    "MqttOptions",
    "Topics",
    "next_boot_counter",
]
